// <trigger-proxy-scratch>: a scratch card for one trigger, as a custom element (an ES module, no
// framework, no build step), built on the trigger-proxy client like <trigger-proxy-wheel>.
//
//   <script type="module" src="https://rewards.example.com/client/trigger-proxy-scratch.js"></script>
//   <trigger-proxy-scratch trigger="scratch-card" base-url="https://rewards.example.com">
//   </trigger-proxy-scratch>
//
// Attributes, property, method and events as the wheel's (trigger-proxy-widget.js holds what
// they share): trigger, base-url, source, customer, challenge-script, the Shopify data-
// attributes; token; refresh() and scratch(); trigger-proxy-reward and trigger-proxy-signin.
//
// Honest by construction: nothing is under the coating until Nector has answered; the card is
// then uncovered on exactly the reward Nector returned (its coins, or its coupon). A refusal
// never uncovers it. Theming: the --tp-* custom properties, as the wheel's, and those below.

import { COMMON_WORDS, TriggerProxyWidget } from "./trigger-proxy-widget.js";

const STYLE = `
:host {
  --tp-card-width: 260px; --tp-coat: #aab0bd; --tp-coat-text: #1d2330; --tp-prize: #fff1b8;
}
.card { position: relative; width: min(var(--tp-card-width), 80cqi); aspect-ratio: 3 / 2;
  border-radius: var(--tp-radius); overflow: hidden; border: 3px solid var(--tp-text);
  box-sizing: border-box; cursor: pointer; }
.prize, .coat { position: absolute; inset: 0; display: grid; place-content: center;
  text-align: center; gap: .25rem; }
.prize { background: var(--tp-prize); color: var(--tp-text); }
.prize b { font-size: 2.5rem; line-height: 1; }
.prize span { font-size: 1.1rem; font-weight: 600; }
.coat { color: var(--tp-coat-text); font-weight: 600; font-size: 1.15rem;
  background: repeating-linear-gradient(135deg, var(--tp-coat) 0 10px,
    color-mix(in srgb, var(--tp-coat) 80%, #fff) 10px 20px);
  clip-path: inset(0 0 0 0); transition: clip-path 1.2s cubic-bezier(.3, .1, .3, 1); }
.coat small { font-size: .95rem; font-weight: 500; }
.card.revealed .coat { clip-path: inset(0 0 0 100%); }
.card:not(.revealed) .coat { transition: none; } /* a fresh card is covered at once */
@media (prefers-reduced-motion: reduce) { .coat { transition: none; } }
`;

// What this game says, in the customer's words (the rest: COMMON_WORDS).
const WORDS = {
  ...COMMON_WORDS,
  "signed-out": "Sign in to scratch the card.",
  waiting: "Checking your card…",
  "out-of-tries": "You have used your cards for now.",
  offline: "You are offline. Your card will go through when you are back online.",
  error: "We could not reveal your card. Please try again in a moment.",
};

/** What the card may hold: the trigger's configured coin range, as its view says. */
function prizesOf(reward) {
  const range = reward?.wallet?.coin_range;
  if (!range) return "A coupon";
  return range.min === range.max ? `${range.min} coins` : `${range.min} to ${range.max} coins`;
}

export class TriggerProxyScratch extends TriggerProxyWidget {
  static kind = "scratch";

  #prizes = "";
  #revealed = null;

  get css() {
    return STYLE;
  }

  get faceHtml() {
    return `<div class="card" part="card" role="img" aria-label="Scratch card">
      <div class="prize" aria-hidden="true"></div>
      <div class="coat" aria-hidden="true"><span>Scratch to reveal</span><small></small></div>
    </div>`;
  }

  get words() {
    return WORDS;
  }

  get actionLabel() {
    return "Scratch the card";
  }

  get playingState() {
    return "revealing";
  }

  get outState() {
    return "out-of-tries";
  }

  get nextText() {
    return "Next card in";
  }

  get leftText() {
    return "Cards left";
  }

  constructor() {
    super();
    this.$(".card").addEventListener("click", () => this.attempt()); // the button is the keyboard's
  }

  /** What the card has uncovered: { coins, coupon }, or null while it is covered. */
  get revealed() {
    return this.#revealed && { ...this.#revealed };
  }

  /** Scratch: one logical attempt (see TriggerProxyWidget.attempt). */
  scratch() {
    return this.attempt();
  }

  attempt() {
    if (["won", "error", "offline"].includes(this.state) && this.#revealed) this.#cover();
    return super.attempt();
  }

  draw(view) {
    this.#prizes = prizesOf(view.reward);
    this.#cover();
  }

  /** Uncover the card on the reward Nector returned, and nothing else. */
  async play(coins, data) {
    const prize = this.$(".prize");
    const card = this.$(".card");
    const coupon = Boolean(data.offer_reward);
    this.#revealed = { coins: typeof coins === "number" ? coins : null, coupon };
    const what = coupon ? "coins and a coupon" : "coins";
    if (typeof coins === "number") {
      prize.innerHTML = `<b></b><span></span>`;
      prize.querySelector("b").textContent = String(coins);
      prize.querySelector("span").textContent = what;
    } else {
      prize.innerHTML = `<span>A coupon</span>`;
    }
    const label = typeof coins === "number" ? `${coins} ${what}` : "a coupon";
    card.setAttribute("aria-label", `Scratch card: ${label}`);
    const still = matchMedia("(prefers-reduced-motion: reduce)").matches;
    card.classList.add("revealed");
    if (still) return;
    const coat = this.$(".coat");
    await new Promise((resolve) => {
      const done = () => resolve();
      coat.addEventListener("transitionend", done, { once: true });
      setTimeout(done, 1500);
    });
  }

  /** A fresh card: covered, nothing under it. */
  #cover() {
    this.#revealed = null;
    this.$(".card").classList.remove("revealed");
    this.$(".prize").replaceChildren();
    this.$(".coat small").textContent = this.#prizes;
    this.$(".card").setAttribute("aria-label", `Scratch card: ${this.#prizes || "a prize"}`);
  }
}

if (!customElements.get("trigger-proxy-scratch")) {
  customElements.define("trigger-proxy-scratch", TriggerProxyScratch);
}
