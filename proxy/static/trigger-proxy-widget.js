// What every trigger-proxy game widget shares (<trigger-proxy-wheel>, <trigger-proxy-scratch>):
// an ES module, no framework, no build step, built on the trigger-proxy client.
//
// TriggerProxyWidget is a custom element's base class. It owns the session (a token property,
// the session cookie, or a Shopify theme's digest), the trigger's view, the customer's balance,
// one Idempotency-Key per attempt kept across its retries, the refusals said in the customer's
// words, the countdowns (kept in localStorage so a reload shows them too), and the provider's
// human check when the trigger asks for one. A game supplies its look and its reveal:
//
//   static kind          "wheel", "scratch": the storage prefix is trigger-proxy-<kind>
//   get words()          { state: what the status line says }, for every state below
//   get css(), get faceHtml()   its CSS and the HTML of its playing area
//   get actionLabel()    the button's label
//   get playingState()   the state while it reveals ("spinning", "revealing")
//   get outState()       the state when the customer's tries are used ("out-of-spins", ...)
//   get nextText()       the countdown's prefix when the tries come back ("Next spin in")
//   get leftText()       what the hint calls the tries left ("Spins left")
//   draw(view)           show the trigger's prizes, from its view (GET /v1/triggers/{trigger})
//   async play(coins, data)   reveal exactly the reward Nector returned
//
// States (the state attribute): loading, signed-out, ready, waiting (the proxy is asked), the
// playing state, won, the out state and busy and budget-spent (countdowns that survive a
// reload), not-active (the schedule is closed: a countdown to its next opening, or ended),
// offline (the same attempt goes through once, back online), expired, error.

import { createClient, newKey } from "./trigger-proxy.js";

export const BASE_STYLE = `
:host {
  --tp-accent: #3f4fcf; --tp-accent-text: #fff; --tp-text: #1d2330; --tp-muted: #4a5163;
  --tp-surface: #fff; --tp-danger: #a1261b; --tp-radius: 12px;
  display: block; container-type: inline-size; color: var(--tp-text); font: inherit;
}
.widget { display: grid; gap: 1rem; align-items: center; justify-items: center;
  background: var(--tp-surface); border-radius: var(--tp-radius); padding: 1rem; }
@container (min-width: 480px) {
  .widget { grid-template-columns: auto 1fr; justify-items: start; }
}
.panel { display: grid; gap: .5rem; width: 100%; max-width: 22rem; }
.balance { font-size: 1.1rem; font-weight: 600; min-height: 1.5em; margin: 0; }
.status { font-size: 1.15rem; min-height: 3em; margin: 0; line-height: 1.5; }
.hint { color: var(--tp-muted); min-height: 1.5em; margin: 0; line-height: 1.5; }
:host([state^="out-of"]) .hint, :host([state="busy"]) .hint,
:host([state="budget-spent"]) .hint, :host([state="not-active"]) .hint,
:host([state="offline"]) .status, :host([state="expired"]) .status,
:host([state="error"]) .status { color: var(--tp-danger); }
button { font: inherit; font-size: 1.05rem; padding: .65rem 1.2rem; min-height: 2.75rem;
  min-width: 10rem; border: 0; border-radius: 8px; background: var(--tp-accent);
  color: var(--tp-accent-text); cursor: pointer; justify-self: start; }
/* Narrow: three lines kept for the longest message, so nothing below moves when it comes. */
@container (max-width: 479px) {
  button { width: 100%; } .panel { justify-items: stretch; }
  .status { font-size: 1rem; min-height: 4.5em; }
}
button:disabled { opacity: .55; cursor: not-allowed; }
button:focus-visible { outline: 3px solid var(--tp-text); outline-offset: 2px; }
`;

// The refusals every game says alike, in the customer's words.
export const COMMON_WORDS = {
  expired: "Your session has ended. Please sign in again.",
  busy: "Lots of players right now.",
  "not-active": "This game is not open yet.",
  ended: "This game has ended.",
  "budget-spent": "All the prizes for now have been given out.",
  "challenge-needed": "Please confirm you are human first.",
  "challenge-failed": "That check did not go through. Please confirm you are human again.",
};

const PLAYABLE = ["ready", "won", "offline", "error"];
const RETRY_MS = 5000; // how soon a balance that could not be read is asked for again

// Where each provider's script is, and its global; explicit rendering into our container.
// reCAPTCHA's global comes before its API is ready, and its ready() says when; Turnstile's
// ready() throws when its script was loaded async, as an added script is.
const PROVIDERS = {
  turnstile: {
    script: "https://challenges.cloudflare.com/turnstile/v0/api.js?render=explicit",
    global: "turnstile",
  },
  hcaptcha: { script: "https://js.hcaptcha.com/1/api.js?render=explicit", global: "hcaptcha" },
  recaptcha: {
    script: "https://www.google.com/recaptcha/api.js?render=explicit",
    global: "grecaptcha",
    ready: true,
  },
};

const loading = new Map(); // script URL -> Promise of its global: one <script> however many widgets

function providerOf(name, url) {
  const provider = PROVIDERS[name];
  if (!provider) return Promise.reject(new Error(`unknown challenge provider ${name}`));
  const src = url || provider.script;
  if (!loading.has(src)) {
    loading.set(
      src,
      new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = src;
        script.async = true;
        script.onerror = () => {
          loading.delete(src);
          reject(new Error("the human check could not be loaded"));
        };
        script.onload = () => {
          const api = globalThis[provider.global];
          if (!api) reject(new Error("the human check could not be loaded"));
          else if (provider.ready) api.ready(() => resolve(api));
          else resolve(api);
        };
        document.head.append(script);
      }),
    );
  }
  return loading.get(src);
}

/** A name for the session a token carries, for the countdowns' storage key: never the token. */
async function digest(token) {
  try {
    const bytes = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token));
    const hex = Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0"));
    return `t:${hex.join("").slice(0, 32)}`;
  } catch {
    return null; // no Web Crypto (plain http): the countdown then does not survive a reload
  }
}

export function waitText(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60}s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Seconds until an RFC 3339 time (null when there is none). */
function secondsUntil(when) {
  const at = when ? Date.parse(when) : NaN;
  return Number.isNaN(at) ? null : (at - Date.now()) / 1000;
}

export class TriggerProxyWidget extends HTMLElement {
  static observedAttributes = ["trigger", "base-url", "source", "challenge-script"];

  #token = null;
  #client = null;
  #view = null;
  #timer = null;
  #pendingKey = null;
  #who = "cookie";
  #hasLead = false; // the customer has a lead, whose id #who is
  #generation = 0; // bumped on refresh(): answers for an earlier customer are dropped
  #challenge = null; // { api, id, token } once the provider's widget is rendered
  #onOnline = () => this.state === "offline" && this.attempt();
  #onReward = (event) => {
    if (event.target !== this && typeof event.detail?.balance === "number") {
      this.#balance(event.detail.balance); // another game on this page paid: the same wallet
    }
  };

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.innerHTML = `<style>${BASE_STYLE}${this.css}</style>
      <div class="widget" part="widget">
        ${this.faceHtml}
        <div class="panel">
          <p class="balance" part="balance"></p>
          <slot name="challenge"></slot>
          <button type="button" class="play" part="button" disabled>${this.actionLabel}</button>
          <p class="status" part="status" role="status" aria-live="polite"></p>
          <p class="hint" part="hint"></p>
        </div>
      </div>`;
    this.$ = (selector) => root.querySelector(selector);
    this.$(".play").addEventListener("click", () => this.attempt());
    // A page may set the token before this module has run: take it over from the plain element.
    if (Object.hasOwn(this, "token")) {
      const token = this.token;
      delete this.token;
      this.#token = token || null;
    }
  }

  get token() {
    return this.#token;
  }

  set token(value) {
    this.#token = value || null;
    if (this.isConnected) this.refresh();
  }

  get state() {
    return this.getAttribute("state");
  }

  connectedCallback() {
    window.addEventListener("online", this.#onOnline);
    window.addEventListener("trigger-proxy-reward", this.#onReward);
    this.refresh();
  }

  disconnectedCallback() {
    window.removeEventListener("online", this.#onOnline);
    window.removeEventListener("trigger-proxy-reward", this.#onReward);
    clearInterval(this.#timer);
  }

  attributeChangedCallback(name, before, after) {
    if (before !== null && before !== after && this.isConnected) this.refresh();
  }

  /** Show a balance the page learnt elsewhere (another reward's answer), without a read. */
  setBalance(coins) {
    this.#balance(coins);
  }

  /** Forget everything shown for the previous customer and look again. */
  async refresh() {
    const generation = ++this.#generation;
    clearInterval(this.#timer);
    this.#pendingKey = null;
    this.#show("loading", "", "");
    this.$(".balance").textContent = "";
    this.#client = createClient({
      baseUrl: (this.getAttribute("base-url") || "").replace(/\/$/, ""),
      token: this.#token,
      shopifyDigest: this.#token ? null : this.#shopifyDigest(),
      source: this.getAttribute("source") || "web",
    });
    let view;
    try {
      view = await this.#client.triggerInfo(this.getAttribute("trigger") || "");
      if (generation !== this.#generation) return;
      this.#view = view;
      this.draw(view);
    } catch {
      if (generation === this.#generation) this.#show("error", this.words.error, "");
      return;
    }
    const schedule = view.schedule;
    const opensIn = secondsUntil(schedule?.opens_at);
    // Closed for everyone: said before anyone signs in. A view that says it should be open by
    // now (a cached one) goes on: the proxy's refusal would say otherwise.
    if (schedule?.open === false && (opensIn === null || opensIn > 0)) {
      return this.#notActive(opensIn);
    }
    await this.#lookUpCustomer(generation);
  }

  /** The theme's digest in the data- attributes, if it rendered one (a customer signed in). */
  #shopifyDigest() {
    const { shop, customer, ts, digest: mac } = this.dataset;
    if (!mac || !customer || !ts) return null;
    return { shop: shop || globalThis.Shopify?.shop, customerId: customer, ts, digest: mac };
  }

  async #lookUpCustomer(generation) {
    let lead = null;
    try {
      lead = await this.#client.lead();
    } catch (err) {
      if (generation !== this.#generation) return;
      if (err.code === "missing_session") return this.#signIn("signed-out");
      if (err.code === "invalid_session" || err.code === "expired_session") {
        return this.#signIn("expired");
      }
      // No lead yet (a new customer): none. No reads on this proxy (read_not_allowed): go
      // on without. A failure is not an empty account: say so, and look again.
      if (err.status === 404) this.#balance(0);
      else if (err.code !== "read_not_allowed") this.#unread(generation);
    }
    if (generation !== this.#generation) return;
    this.#hasLead = Boolean(lead);
    if (lead) this.#balance(lead.available, lead.asOf);
    const token = this.#token;
    const shopper = this.#shopifyDigest()?.customerId;
    const named =
      lead?._id || this.getAttribute("customer") || (shopper ? `shopify:${shopper}` : null);
    const who = named || (token ? await digest(token) : "cookie");
    if (generation !== this.#generation) return;
    this.#who = who;
    const saved = this.#saved();
    if (saved) return this.#countdown(saved.kind, (saved.until - Date.now()) / 1000, false);
    this.#ready();
  }

  #ready(status = "") {
    this.#show("ready", status, "");
    if (this.#view?.challenge) this.#renderChallenge(this.#generation);
  }

  /** Play: one logical attempt, with one Idempotency-Key (and one challenge token) across retries. */
  async attempt() {
    if (!PLAYABLE.includes(this.state)) return;
    if (!this.#view) return this.refresh(); // the trigger could not be read
    const generation = this.#generation;
    const needsCheck = Boolean(this.#view.challenge);
    const challengeToken = needsCheck ? this.#challenge?.token : null;
    if (needsCheck && !challengeToken) {
      this.$(".status").textContent = this.#challenge
        ? COMMON_WORDS["challenge-needed"]
        : this.words.error; // the provider's script could not be loaded
      return;
    }
    const key = this.#pendingKey || newKey();
    this.#pendingKey = key;
    this.#show("waiting", this.words.waiting, "");
    this.$(".play").setAttribute("aria-busy", "true");
    let result;
    try {
      result = await this.#client.trigger(this.getAttribute("trigger"), {
        idempotencyKey: key,
        challengeToken,
      });
    } catch (err) {
      if (generation === this.#generation) this.#refused(err);
      return;
    } finally {
      this.$(".play").removeAttribute("aria-busy");
    }
    if (generation !== this.#generation) return;
    this.#pendingKey = null;
    if (needsCheck) this.#resetChallenge(); // tokens are single-use
    const data = result.data?.data || {};
    const dryRun = result.data?.dry_run === true;
    const coins = data.wallet_reward?.coins;
    this.#show(this.playingState, "", "");
    // The reward's answer carries the balance: no read needed (Nector's widget reads the lead),
    // unless the customer's lead is new: its id names the countdown kept across reloads.
    const paid = data.wallet_reward?.balance;
    let balance = !dryRun && typeof paid === "number" ? paid : null;
    const known = this.#hasLead && (balance !== null || dryRun);
    const lead = known ? null : this.#client.lead().catch(() => null);
    await this.play(coins, data);
    const fresh = await lead;
    if (generation !== this.#generation) return;
    if (fresh) {
      this.#who = fresh._id;
      this.#hasLead = true;
      if (balance === null) balance = fresh.available;
    }
    if (balance !== null) this.#balance(balance);
    const coupon = data.offer_reward ? " and a coupon" : "";
    const won =
      typeof coins === "number" ? `You won ${coins} coins${coupon}!` : "You won a coupon!";
    const limit = result.rateLimit;
    const left = limit ? `${this.leftText}: ${limit.remaining}` : "";
    const hint = dryRun ? `A test run: nothing was given. ${left}`.trim() : left;
    if (limit && limit.remaining <= 0) this.#countdown(this.outState, limit.reset, true, won);
    else this.#show("won", won, hint);
    this.dispatchEvent(
      new CustomEvent("trigger-proxy-reward", {
        detail: { ...result, balance },
        bubbles: true,
        composed: true,
      }),
    );
  }

  #refused(err) {
    const code = err.code;
    if (code === "network_error") return this.#show("offline", this.words.offline, "", "Try again");
    this.#pendingKey = null;
    if (code === "challenge_failed") {
      this.#resetChallenge();
      return this.#ready(COMMON_WORDS["challenge-failed"]);
    }
    if (this.#view?.challenge) this.#resetChallenge(); // the proxy may have spent the token
    if (code === "missing_session") return this.#signIn("signed-out");
    if (code === "invalid_session" || code === "expired_session") return this.#signIn("expired");
    if (code === "rate_limited") return this.#countdown(this.outState, err.retryAfter ?? 60, true);
    if (code === "coin_budget_spent") {
      return this.#countdown("budget-spent", err.retryAfter ?? 3600, true);
    }
    if (code === "trigger_not_active") {
      // Retry-After first: it holds on any clock; opens_at is on the proxy's.
      return this.#notActive(err.retryAfter ?? secondsUntil(err.opensAt));
    }
    if (
      code === "upstream_busy" ||
      code === "idempotency_in_flight" ||
      code === "challenge_unavailable"
    ) {
      return this.#countdown("busy", err.retryAfter ?? 10, true);
    }
    // A fault (5xx) may pass: the widget's own words say try again. A refusal (a trigger not
    // allow-listed, say) in the proxy's words for the shopper.
    this.#show("error", (err.status < 500 && err.shopperMessage) || this.words.error, "");
  }

  #signIn(state) {
    this.#show(state, state === "expired" ? COMMON_WORDS.expired : this.words[state], "");
    this.dispatchEvent(new CustomEvent("trigger-proxy-signin", { bubbles: true, composed: true }));
  }

  /** Closed by its schedule: a countdown to its next opening, then a fresh look; or ended. */
  #notActive(seconds) {
    clearInterval(this.#timer);
    if (seconds === null || seconds === undefined) {
      return this.#show("not-active", COMMON_WORDS.ended, "");
    }
    const until = Date.now() + Math.max(0, seconds) * 1000;
    const tick = () => {
      const left = (until - Date.now()) / 1000;
      if (left <= 0) {
        clearInterval(this.#timer);
        return this.refresh();
      }
      this.$(".hint").textContent = `Opens in ${waitText(left)}`;
    };
    this.#show("not-active", COMMON_WORDS["not-active"], "");
    tick();
    this.#timer = setInterval(tick, 1000);
  }

  /** A live countdown (429 and 503 alike), kept in localStorage so a reload shows it too. */
  #countdown(kind, seconds, save, status = this.words[kind] || COMMON_WORDS[kind]) {
    clearInterval(this.#timer);
    const until = Date.now() + Math.max(0, seconds) * 1000;
    if (save) this.#save({ kind, until });
    const prefix =
      kind === "busy" ? "Try again in" : kind === "budget-spent" ? "More prizes in" : this.nextText;
    const tick = () => {
      const left = (until - Date.now()) / 1000;
      if (left <= 0) {
        clearInterval(this.#timer);
        this.#save(null);
        return this.#ready();
      }
      this.$(".hint").textContent = `${prefix} ${waitText(left)}`;
    };
    this.#show(kind, status, "");
    tick();
    this.#timer = setInterval(tick, 1000);
  }

  #show(state, status, hint, label = this.actionLabel) {
    this.setAttribute("state", state);
    this.$(".status").textContent = status;
    this.$(".hint").textContent = hint;
    const button = this.$(".play");
    button.textContent = label;
    button.disabled = !PLAYABLE.includes(state);
  }

  #balance(coins, asOf = null) {
    const when = asOf ? ` (as of ${asOf.toLocaleTimeString()})` : "";
    this.$(".balance").textContent =
      typeof coins === "number" ? `Balance: ${coins} coins${when}` : "";
  }

  /** The balance could not be read: the last one seen, as of when, or say so; and retry. */
  #unread(generation) {
    const known = this.#client.balance();
    if (known) this.#balance(known.coins, known.at);
    else this.$(".balance").textContent = "Balance: couldn't load, retrying…";
    setTimeout(async () => {
      if (generation !== this.#generation) return;
      try {
        const lead = await this.#client.lead();
        if (generation === this.#generation && lead) this.#balance(lead.available, lead.asOf);
      } catch {
        if (generation === this.#generation) this.#unread(generation);
      }
    }, RETRY_MS);
  }

  /** The provider's own widget, in a light-DOM child (its iframes do not work in a shadow root). */
  async #renderChallenge(generation) {
    const { provider, site_key: sitekey } = this.#view.challenge;
    if (this.#challenge?.provider === provider) return; // rendered already, for this trigger
    let host = this.querySelector(':scope > [slot="challenge"]');
    if (!host) {
      host = document.createElement("div");
      host.slot = "challenge";
      host.className = "trigger-proxy-challenge";
      this.append(host);
    }
    host.replaceChildren();
    this.#challenge = { provider, api: null, id: null, token: null };
    const challenge = this.#challenge;
    try {
      challenge.api = await providerOf(provider, this.getAttribute("challenge-script"));
    } catch {
      if (challenge === this.#challenge) this.#challenge = null; // the next ready tries again
      if (generation === this.#generation) this.#show("error", this.words.error, "");
      return;
    }
    if (challenge !== this.#challenge) return;
    challenge.id = challenge.api.render(host, {
      sitekey,
      callback: (token) => {
        challenge.token = token;
      },
      "expired-callback": () => {
        challenge.token = null;
      },
      "error-callback": () => {
        challenge.token = null;
      },
    });
  }

  #resetChallenge() {
    const challenge = this.#challenge;
    if (!challenge?.api) return;
    challenge.token = null;
    challenge.api.reset(challenge.id);
  }

  #storageKey() {
    return `trigger-proxy-${this.constructor.kind}:${this.getAttribute("trigger")}:${this.#who}`;
  }

  #saved() {
    if (this.#who === null) return null;
    try {
      const saved = JSON.parse(localStorage.getItem(this.#storageKey()) || "null");
      return saved && saved.until > Date.now() ? saved : null;
    } catch {
      return null;
    }
  }

  #save(value) {
    if (this.#who === null) return;
    try {
      if (value) localStorage.setItem(this.#storageKey(), JSON.stringify(value));
      else localStorage.removeItem(this.#storageKey());
    } catch {
      // Storage refused (private mode): the countdown just does not survive a reload.
    }
  }
}
