// <trigger-proxy-wheel>: a spin-the-wheel for one trigger, as a custom element (an ES module, no
// framework, no build step), built on the trigger-proxy client.
//
//   <script type="module" src="https://rewards.example.com/client/trigger-proxy-wheel.js"></script>
//   <trigger-proxy-wheel trigger="spin-wheel" base-url="https://rewards.example.com">
//   </trigger-proxy-wheel>
//
// Attributes: trigger (an allow-listed id or name), base-url (the proxy; default: this page's
// origin), source (x-source: web, mobile or unix), customer (optional: names the customer for
// the countdown kept across reloads when the proxy serves no reads), and on a Shopify theme
// either base-url="/apps/<subpath>" (the shop's App Proxy) or data-shop, data-customer, data-ts
// and data-digest (a theme digest, docs/shopify.md). Property: token (a session
// token, sent as a bearer token; without one the session cookie is used). Method: refresh()
// (call it after the customer signs in, out or changes: everything of the previous one goes).
// Events (bubbling, composed): trigger-proxy-reward {detail: the client's result} after a win;
// trigger-proxy-signin when the customer must sign in (again).
//
// Honest by construction: the segments are the trigger's configured coin range, read from the
// proxy; the wheel turns only once Nector has answered, and stops on the segment holding the
// reward it returned. A refusal never turns it. Theming: the --tp-* custom properties below
// and in trigger-proxy-widget.js, which holds what every game shares (its states, the session,
// the countdowns, the human check; attribute challenge-script: the provider's script URL).

import { COMMON_WORDS, TriggerProxyWidget } from "./trigger-proxy-widget.js";

const STYLE = `
:host {
  --tp-wheel-size: 220px;
  --tp-segment-1: #ffd6d6; --tp-segment-2: #fff1b8; --tp-segment-3: #d4f5d9; --tp-segment-4: #d6e6ff;
}
.wheel-area { position: relative; width: min(var(--tp-wheel-size), 80cqi); aspect-ratio: 1; }
.wheel { width: 100%; height: 100%; display: block;
  transition: transform 3s cubic-bezier(.15, .85, .25, 1); }
.pointer { position: absolute; top: -6px; left: 50%; transform: translateX(-50%); width: 0; height: 0;
  border-left: 12px solid transparent; border-right: 12px solid transparent;
  border-top: 24px solid var(--tp-text); z-index: 1; }
text { font: 600 9px system-ui, sans-serif; fill: #1d2330; }
@media (prefers-reduced-motion: reduce) { .wheel { transition: none; } }
`;

const COLORS = 4;
const MAX_SEGMENTS = 8;
const TURNS = 5; // full turns before the wheel settles

// What this game says, in the customer's words (the rest: COMMON_WORDS).
const WORDS = {
  ...COMMON_WORDS,
  "signed-out": "Sign in to spin the wheel.",
  waiting: "Checking your spin…",
  "out-of-spins": "You have used your spins for now.",
  offline: "You are offline. Your spin will go through when you are back online.",
  error: "We could not finish your spin. Please try again in a moment.",
};

function segmentsOf(reward) {
  const range = reward?.wallet?.coin_range;
  if (!range) return [{ min: null, max: null, label: "Coupon" }];
  const { min, max } = range;
  const count = Math.max(1, Math.min(MAX_SEGMENTS, max - min + 1));
  const size = (max - min + 1) / count;
  return Array.from({ length: count }, (_, i) => {
    const lo = min + Math.floor(i * size);
    const hi = min + Math.floor((i + 1) * size) - 1;
    return { min: lo, max: hi, label: lo === hi ? `${lo}` : `${lo}–${hi}` };
  });
}

/** The SVG path of segment i of n, clockwise from the top (a whole disc when n is 1). */
function sector(i, n) {
  if (n === 1) return "M 0 -96 A 96 96 0 1 1 -0.01 -96 Z";
  const a0 = ((i / n) * 2 - 0.5) * Math.PI;
  const a1 = (((i + 1) / n) * 2 - 0.5) * Math.PI;
  const p = (a) => `${(96 * Math.cos(a)).toFixed(2)} ${(96 * Math.sin(a)).toFixed(2)}`;
  return `M 0 0 L ${p(a0)} A 96 96 0 0 1 ${p(a1)} Z`; // at most 8 segments: never over half
}

export class TriggerProxyWheel extends TriggerProxyWidget {
  static kind = "wheel";

  #segments = [];
  #rotation = 0;

  get css() {
    return STYLE;
  }

  get faceHtml() {
    return `<div class="wheel-area"><div class="pointer" aria-hidden="true"></div>
      <svg class="wheel" viewBox="-100 -100 200 200" role="img" aria-label="Prize wheel"></svg>
    </div>`;
  }

  get words() {
    return WORDS;
  }

  get actionLabel() {
    return "Spin the wheel";
  }

  get playingState() {
    return "spinning";
  }

  get outState() {
    return "out-of-spins";
  }

  get nextText() {
    return "Next spin in";
  }

  get leftText() {
    return "Spins left";
  }

  /** The wheel's segments ({min, max, label}), as drawn, clockwise from the pointer. */
  get segments() {
    return this.#segments.map((s) => ({ ...s }));
  }

  /** Spin: one logical attempt (see TriggerProxyWidget.attempt). */
  spin() {
    return this.attempt();
  }

  draw(view) {
    this.#drawSegments(segmentsOf(view.reward));
  }

  async play(coins) {
    await this.#turnTo(coins);
  }

  #drawSegments(segments) {
    this.#segments = segments;
    const n = segments.length;
    const svg = this.$(".wheel");
    const parts = segments.map((s, i) => {
      const mid = ((i + 0.5) / n) * 360;
      return `<path d="${sector(i, n)}" fill="var(--tp-segment-${(i % COLORS) + 1})"
          stroke="#1d2330" stroke-width="1"></path>
        <text transform="rotate(${mid}) translate(0 -62) rotate(90)" text-anchor="middle"
          dominant-baseline="middle">${s.label}</text>`;
    });
    svg.innerHTML = `${parts.join("")}<circle r="96" fill="none" stroke="#1d2330" stroke-width="4"></circle>`;
    const coins = segments[0].min === null ? "" : " coins";
    svg.setAttribute(
      "aria-label",
      `Prize wheel: ${segments.map((s) => s.label).join(", ")}${coins}`,
    );
  }

  /** Turn to the segment holding ``coins`` (the nearest, if Nector paid outside the range). */
  async #turnTo(coins) {
    const segments = this.#segments;
    const n = segments.length;
    let index = 0;
    if (typeof coins === "number" && segments[0].min !== null) {
      const distance = (s) => (coins < s.min ? s.min - coins : coins > s.max ? coins - s.max : 0);
      index = segments.reduce(
        (best, s, i) => (distance(s) < distance(segments[best]) ? i : best),
        0,
      );
    }
    this.setAttribute("landed", String(index));
    const width = 360 / n;
    const jitter = (Math.random() - 0.5) * width * 0.6;
    const target = 360 - ((index + 0.5) * width + jitter); // that segment under the pointer
    const current = ((this.#rotation % 360) + 360) % 360;
    this.#rotation += TURNS * 360 + ((target - current + 360) % 360);
    const wheel = this.$(".wheel");
    const still = matchMedia("(prefers-reduced-motion: reduce)").matches;
    wheel.style.transform = `rotate(${this.#rotation}deg)`;
    if (still) return;
    await new Promise((resolve) => {
      const done = () => resolve();
      wheel.addEventListener("transitionend", done, { once: true });
      setTimeout(done, 3300);
    });
  }
}

if (!customElements.get("trigger-proxy-wheel")) {
  customElements.define("trigger-proxy-wheel", TriggerProxyWheel);
}
