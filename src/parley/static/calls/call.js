/**
 * One WebRTC call over Parley's signalling (docs/calls.md): the RTCPeerConnection, the local
 * microphone (and camera), and the call.* events of a ParleyClient. Used by the call page.
 *
 *   const calls = new Calls(client, { iceServers, relayOnly, onChange });
 *   await calls.place(conversationId, toUserId);   // or, on an incoming call, calls.answer()
 *   calls.hangUp();
 *
 * `calls.state` is "idle" | "ringing-out" | "ringing-in" | "connecting" | "connected" | "ended";
 * `calls.peerState` the RTCPeerConnection's connectionState. Candidates that arrive before the
 * remote description are kept and added after it; ours wait until the server has the offer or
 * answer, so the peer never gets a candidate for a call it does not know yet.
 */

const newCallId = () => `c${crypto.getRandomValues(new Uint32Array(4)).join("")}`;

export class Calls {
  constructor(client, { iceServers = [], relayOnly = false, media = "audio", onChange = () => {} } = {}) {
    this.client = client;
    this.iceServers = iceServers;
    this.relayOnly = relayOnly;
    this.media = media;
    this.onChange = onChange;
    this.state = "idle";
    this.peerState = "new";
    this.call = null; // the server's view of the current call
    this.incoming = null; // {call, sdp, candidates} of a call ringing for us
    this.reason = null;
    this.pc = null;
    this.localStream = null;
    this.remoteStream = null;
    this.pendingRemote = []; // peer candidates before the remote description
    this.pendingLocal = []; // our candidates before the server has our offer/answer
    this.signalled = false;
    for (const type of ["offer", "answer", "ice", "reject", "busy", "hangup", "missed", "sync"]) {
      client.on(`call.${type}`, (event) => this.#onEvent(type, event));
    }
  }

  get me() {
    return this.client.user?.id;
  }

  /** Ring `toUserId` in a conversation (in a direct one it may be omitted). */
  async place(conversationId, toUserId) {
    if (this.pc) throw new Error("already in a call");
    const callId = newCallId();
    this.#setState("ringing-out");
    await this.#open();
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    try {
      this.call = await this.client.signal("call.offer", {
        conversation_id: conversationId,
        call_id: callId,
        to_user_id: toUserId ?? undefined,
        sdp: offer.sdp,
        media: this.media,
      });
    } catch (error) {
      this.#close("failed", error.code);
      throw error;
    }
    this.#flushLocal();
  }

  /** Take the call that rings for us. */
  async answer() {
    const ringing = this.incoming;
    if (!ringing || this.pc) return;
    this.incoming = null;
    this.call = ringing.call;
    this.#setState("connecting");
    await this.#open();
    await this.pc.setRemoteDescription({ type: "offer", sdp: ringing.sdp });
    this.pendingRemote.push(...(ringing.candidates ?? []));
    await this.#addPendingRemote();
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    try {
      this.call = await this.client.signal("call.answer", { call_id: this.call.id, sdp: answer.sdp });
    } catch (error) {
      this.#close("failed", error.code);
      throw error;
    }
    this.#flushLocal();
  }

  /** Decline the call that rings for us. */
  async decline() {
    const ringing = this.incoming;
    if (!ringing) return;
    this.incoming = null;
    this.#setState("ended", "rejected");
    await this.client.signal("call.reject", { call_id: ringing.call.id }).catch(() => null);
  }

  /** End (or cancel) our call. */
  async hangUp() {
    const call = this.call;
    this.#close("ended", "hangup");
    if (call) await this.client.signal("call.hangup", { call_id: call.id }).catch(() => null);
  }

  /** Calls of this device left over from before a reload cannot go on: end them. */
  async endStale() {
    const { calls } = await this.client.request("GET", "/v1/calls", { params: { live: true } });
    const device = this.client.deviceId;
    for (const call of calls) {
      const ours = call.caller_device === device || call.callee_device === device;
      if (ours && call.id !== this.call?.id) {
        await this.client.signal("call.hangup", { call_id: call.id }).catch(() => null);
      }
    }
  }

  // -- events from the stream --------------------------------------------------------------------

  async #onEvent(type, event) {
    const call = event.call;
    const mine = this.call?.id === call.id;
    const fromPeer = event.from_user_id !== this.me || event.from_device !== this.client.deviceId;
    if (type === "offer") return this.#onOffer(event);
    if (type === "sync") return this.#onSync(event);
    if (this.incoming?.call.id === call.id && type !== "ice") {
      // Answered on another of our devices, declined, cancelled or missed: stop ringing.
      this.incoming = null;
      this.#setState(type === "answer" ? "idle" : "ended", type === "answer" ? "answered elsewhere" : call.end_reason);
      return;
    }
    if (this.incoming?.call.id === call.id && type === "ice") {
      this.incoming.candidates.push(event.candidate);
      return;
    }
    if (!mine || !fromPeer) return;
    this.call = call;
    if (type === "answer" && call.caller_device === this.client.deviceId) {
      this.#setState("connecting");
      await this.pc.setRemoteDescription({ type: "answer", sdp: event.sdp });
      await this.#addPendingRemote();
    } else if (type === "ice") {
      await this.#addRemote(event.candidate);
    } else if (["reject", "busy", "hangup", "missed"].includes(type)) {
      this.#close("ended", call.end_reason ?? type);
    }
  }

  async #onOffer(event) {
    const call = event.call;
    if (call.caller_id === this.me || this.incoming?.call.id === call.id) return;
    if (this.pc || this.call?.id === call.id) {
      if (this.call?.id !== call.id) {
        await this.client.signal("call.busy", { call_id: call.id }).catch(() => null);
      }
      return;
    }
    this.incoming = { call, sdp: event.sdp, candidates: [...(event.candidates ?? [])] };
    this.#setState("ringing-in");
  }

  async #onSync(event) {
    // We came back after a drop: pick up what the peer sent meanwhile.
    if (this.call?.id !== event.call.id || !this.pc) return;
    this.call = event.call;
    if (event.sdp && !this.pc.remoteDescription && event.call.caller_device === this.client.deviceId) {
      await this.pc.setRemoteDescription({ type: "answer", sdp: event.sdp });
    }
    for (const candidate of event.candidates ?? []) await this.#addRemote(candidate);
  }

  // -- the peer connection -----------------------------------------------------------------------

  async #open() {
    this.pc = new RTCPeerConnection({
      iceServers: this.iceServers,
      iceTransportPolicy: this.relayOnly ? "relay" : "all",
    });
    this.pc.addEventListener("icecandidate", ({ candidate }) => {
      if (!candidate) return;
      this.pendingLocal.push(candidate.toJSON());
      if (this.call) this.#flushLocal();
    });
    this.pc.addEventListener("connectionstatechange", () => {
      this.peerState = this.pc?.connectionState ?? "closed";
      if (this.peerState === "connected") this.#setState("connected");
      else if (this.peerState === "failed") this.hangUp();
      else this.onChange(this);
    });
    this.pc.addEventListener("track", ({ streams }) => {
      this.remoteStream = streams[0] ?? null;
      this.onChange(this);
    });
    const video = this.media === "video";
    this.localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video });
    for (const track of this.localStream.getTracks()) this.pc.addTrack(track, this.localStream);
  }

  #flushLocal() {
    const call = this.call;
    for (const candidate of this.pendingLocal.splice(0)) {
      this.client.signal("call.ice", { call_id: call.id, candidate }).catch(() => null);
    }
  }

  async #addRemote(candidate) {
    if (!this.pc?.remoteDescription) {
      this.pendingRemote.push(candidate);
      return;
    }
    await this.pc.addIceCandidate(candidate).catch(() => null); // a stale one is harmless
  }

  async #addPendingRemote() {
    for (const candidate of this.pendingRemote.splice(0)) await this.#addRemote(candidate);
  }

  #close(state, reason) {
    for (const track of this.localStream?.getTracks() ?? []) track.stop();
    this.pc?.close();
    this.pc = this.localStream = this.remoteStream = this.call = null;
    this.pendingLocal = [];
    this.pendingRemote = [];
    this.peerState = "closed";
    this.#setState(state, reason);
  }

  #setState(state, reason = null) {
    this.state = state;
    this.reason = reason;
    this.onChange(this);
  }
}
