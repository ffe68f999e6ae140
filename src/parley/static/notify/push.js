/**
 * Turn Web Push on for the signed-in user in this browser:
 *
 *   import { enablePush } from "/static/notify/push.js";
 *   await enablePush({ baseUrl: "", token });   // asks for permission, subscribes, registers
 *
 * Registers /parley-sw.js, subscribes with the deployment's VAPID key and sends the
 * subscription to POST /v1/notifications/push/subscriptions. Returns the stored subscription.
 */

function keyBytes(base64url) {
  const padded = base64url.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((base64url.length + 3) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

export async function enablePush({ baseUrl = "", token }) {
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
    throw new Error("this browser has no Web Push");
  }
  if ((await Notification.requestPermission()) !== "granted") {
    throw new Error("notifications were not allowed");
  }
  const keyResponse = await fetch(`${baseUrl}/v1/notifications/push/key`);
  if (!keyResponse.ok) throw new Error("Web Push is not configured on this server");
  const { public_key: publicKey } = await keyResponse.json();
  const registration = await navigator.serviceWorker.register(`${baseUrl}/parley-sw.js`, { scope: "/" });
  await navigator.serviceWorker.ready;
  const subscription =
    (await registration.pushManager.getSubscription()) ??
    (await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(publicKey) }));
  const response = await fetch(`${baseUrl}/v1/notifications/push/subscriptions`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(subscription.toJSON()),
  });
  if (!response.ok) throw new Error(`the server refused the subscription (${response.status})`);
  return response.json();
}
