// New-message alerts for operators: a title counter "(N) Parley console", an optional sound
// (off until switched on, remembered per browser) and desktop notifications, asked for only
// when the operator presses the button (browsers ignore, and users dislike, a prompt on load).

import { $ } from "./dom.js";

const SOUND_KEY = "parley.console.sound";

export class Alerts {
  #base = document.title;
  #listed = 0; // conversations marked new in the list
  #unseen = 0; // messages to the open conversation while the page was hidden
  #audio = null;

  constructor() {
    this.sound = localStorage.getItem(SOUND_KEY) === "on";
    $("sound-toggle").addEventListener("click", () => this.#setSound(!this.sound));
    $("notify-enable").addEventListener("click", () => this.#askPermission());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") {
        this.#unseen = 0;
        this.#showCount();
      }
    });
    this.#setSound(this.sound);
    this.#showPermission();
  }

  /** The list's count of conversations with something new. */
  setListed(count) {
    this.#listed = count;
    this.#showCount();
  }

  /** A visitor wrote (`open`: in the conversation on screen). Ring, notify, count as fits. */
  onVisitorMessage({ title, body, open }) {
    const away = document.visibilityState !== "visible";
    if (open && !away) return; // they are looking at it
    if (open) this.#unseen += 1;
    this.#showCount();
    if (this.sound) this.#beep();
    if (away && "Notification" in window && Notification.permission === "granted") {
      const note = new Notification(title, { body, tag: `parley-${title}` });
      note.addEventListener("click", () => window.focus());
    }
  }

  #showCount() {
    const count = this.#listed + this.#unseen;
    document.title = count > 0 ? `(${count}) ${this.#base}` : this.#base;
  }

  #setSound(on) {
    this.sound = on;
    localStorage.setItem(SOUND_KEY, on ? "on" : "off");
    const button = $("sound-toggle");
    button.setAttribute("aria-pressed", String(on));
    button.textContent = on ? "Sound on" : "Sound off";
  }

  #showPermission() {
    const button = $("notify-enable");
    const supported = "Notification" in window;
    button.hidden = !supported || Notification.permission !== "default";
  }

  async #askPermission() {
    try {
      await Notification.requestPermission();
    } finally {
      this.#showPermission();
    }
  }

  /** A short two-tone chime, made here: no audio file to fetch, nothing for the CSP to allow. */
  #beep() {
    try {
      this.#audio ??= new AudioContext();
      const context = this.#audio;
      const gain = context.createGain();
      gain.gain.setValueAtTime(0.08, context.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.001, context.currentTime + 0.35);
      gain.connect(context.destination);
      [880, 660].forEach((frequency, index) => {
        const tone = context.createOscillator();
        tone.frequency.value = frequency;
        tone.connect(gain);
        tone.start(context.currentTime + index * 0.12);
        tone.stop(context.currentTime + index * 0.12 + 0.12);
      });
    } catch {
      // No audio (autoplay policy before any click, or no device): the title still counts.
    }
  }
}
