// trigger-proxy browser client: a plain ES module, no build step.
//
//   import { createClient } from "https://rewards.example.com/client/trigger-proxy.js";
//   const rewards = createClient({ baseUrl: "https://rewards.example.com", token });
//   try {
//     const { data } = await rewards.trigger("spin-wheel");
//   } catch (err) {
//     if (err.code === "rate_limited") showCountdown(err.retryAfter);
//   }
//
// One call to trigger() is one logical attempt: it carries one Idempotency-Key, and every
// retry of that attempt (after a network failure, or while the first is still in flight)
// reuses it, so the proxy never pays out twice however flaky the network.
//
// On a Shopify theme with no backend (docs/shopify.md), either give baseUrl as the shop's own
// App Proxy path ("/apps/rewards": same origin, no token, Shopify signs the customer in), or give
// shopifyDigest, the theme's rendered digest, which the client trades for a session.
//
// The reads (lead(), walletTransactions(), coupons(), triggers(), ...) are Nector's own GETs,
// answered by the proxy for the session's customer only (enabled in its [reads] config); each
// resolves to Nector's `data` object. An answer the proxy could only give from its last copy
// (X-Cache: STALE) has an `asOf` Date (not enumerable): show it as "as of", never as news.
// balance() is the session's balance as last seen, { coins, at }, from a lead read or from a
// reward's own answer (wallet_reward.balance), so a page can update it without a read.

// A refusal in the shopper's words, as the proxy writes it in data.message on Nector's paths
// (proxy/http/shopper.py; tests/test_nector_widget.py keeps the two the same).
export const SHOPPER = {
  missing_session: "Please sign in to continue.",
  invalid_session: "Please sign in again.",
  expired_session: "Please sign in again.",
  identity_mismatch: "This account does not match. Please sign in again.",
  lead_session_required: "Rewards are not available for this account yet.",
  trigger_not_allowed: "This reward is not available.",
  source_not_allowed: "This reward is not available here.",
  origin_not_allowed: "Rewards are not available on this page.",
  read_not_allowed: "This is not available.",
  shop_not_allowed: "Rewards are not available in this shop.",
  not_found: "We could not find that.",
  offer_not_allowed: "This offer cannot be redeemed here.",
  redemption_off: "Redeeming coins is not available here yet.",
  trigger_not_active: "This reward is not open right now.",
  challenge_failed: "Please complete the check and try again.",
  upstream_error: "Rewards are unavailable right now. Please try again later.",
  upstream_rejected: "Rewards are unavailable right now. Please try again later.",
  upstream_timeout: "Rewards are unavailable right now. Please try again later.",
  storage_unavailable: "Rewards are unavailable right now. Please try again later.",
  coin_budget_spent: "This reward has run out for now. Try again in {wait}.",
  challenge_unavailable: "Rewards are busy right now. Try again in {wait}.",
  rate_limited: "Too many tries. Try again in {wait}.",
  idempotency_in_flight: "Your reward is on its way. Try again in {wait}.",
  upstream_busy: "Rewards are busy right now. Try again in {wait}.",
  server_busy: "Rewards are busy right now. Try again in {wait}.",
};
export const GENERAL = "Something went wrong. Please refresh the page and try again.";

function waitWords(seconds) {
  if (seconds >= 3600) {
    const hours = Math.ceil(seconds / 3600);
    return `${hours} hour${hours > 1 ? "s" : ""}`;
  }
  if (seconds >= 60) {
    const minutes = Math.ceil(seconds / 60);
    return `${minutes} minute${minutes > 1 ? "s" : ""}`;
  }
  return "a moment";
}

/** The sentence a shopper is shown for a refusal: the proxy's own on Nector's paths. */
export function shopperMessage(code, retryAfter = null, fromBody = null) {
  if (fromBody) return fromBody;
  const text = SHOPPER[code] || GENERAL;
  return text.replace("{wait}", waitWords(retryAfter ?? 60));
}

export class TriggerProxyError extends Error {
  constructor(code, message, options = {}) {
    const { status = 0, retryAfter = null, requestId = null, opensAt = null } = options;
    super(message); // the developer's detail
    this.name = "TriggerProxyError";
    this.code = code; // one of the contract's codes, or "network_error"
    this.status = status;
    this.retryAfter = retryAfter; // seconds, when the proxy said when to come back
    this.requestId = requestId;
    this.opensAt = opensAt; // trigger_not_active: when it next opens (RFC 3339), null if never
    this.shopperMessage = shopperMessage(code, retryAfter, options.shopper); // what a page shows
  }
}

/** A new Idempotency-Key: one per logical attempt. */
export function newKey() {
  if (globalThis.crypto && typeof globalThis.crypto.randomUUID === "function") {
    return globalThis.crypto.randomUUID();
  }
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function rateLimitOf(headers) {
  const limit = headers.get("RateLimit-Limit");
  if (limit === null) return null;
  return {
    limit: Number(limit),
    remaining: Number(headers.get("RateLimit-Remaining")),
    reset: Number(headers.get("RateLimit-Reset")),
  };
}

/** When the proxy signed a session token: its middle part (docs/sessions.md, "Format"). */
function signedAt(token) {
  const parts = token.split(".");
  const bytes = atob(parts[parts.length - 2].replace(/-/g, "+").replace(/_/g, "/"));
  let seconds = 0;
  for (const byte of bytes) seconds = seconds * 256 + byte.charCodeAt(0);
  return seconds;
}

/**
 * createClient(options)
 *   baseUrl   where the proxy is ("" for the page's own origin)
 *   token     a session token for Authorization: Bearer; omit to use the session cookie
 *   shopifyDigest  { shop, customerId, ts, digest }, as a Shopify theme renders them: traded
 *             for a session (POST /v1/sessions/shopify) on first use and again before it ends
 *   source    "web" (default), "mobile" or "unix": sent as X-Source
 *   retries   how many times to retry one attempt after a network failure (default 2)
 *   fetch     a fetch implementation (default: the global one)
 */
export function createClient({
  baseUrl = "",
  token = null,
  shopifyDigest = null,
  source = "web",
  retries = 2,
  fetch: fetchImpl = globalThis.fetch.bind(globalThis),
} = {}) {
  let traded = null; // { token, renewAt } of the digest's session, on this page's clock
  let trading = null;

  /** The session token to send: the given one, or the digest's (traded when it is near its end). */
  async function bearer() {
    if (!shopifyDigest) return token;
    if (traded && Date.now() / 1000 < traded.renewAt) return traded.token;
    trading ||= trade().finally(() => {
      trading = null;
    });
    return trading;
  }

  async function trade() {
    const { shop, customerId, ts, digest } = shopifyDigest;
    let response;
    try {
      response = await fetchImpl(`${baseUrl}/v1/sessions/shopify`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ shop, customer_id: String(customerId), ts: Number(ts), digest }),
        credentials: "omit",
      });
    } catch {
      throw new TriggerProxyError("network_error", "the reward service could not be reached");
    }
    const body = await answerOf(response);
    // expires_at is on the proxy's clock; the lifetime is not, so renew a minute before the end
    // on this page's clock, however far apart the two are.
    const lifetime = body.expires_at - signedAt(body.token);
    traded = { token: body.token, renewAt: Date.now() / 1000 + lifetime - 60 };
    return body.token;
  }

  async function send(trigger, key, auth, challengeToken) {
    const headers = { "Content-Type": "application/json", "X-Source": source };
    if (auth) headers.Authorization = `Bearer ${auth}`;
    headers["Idempotency-Key"] = key;
    if (challengeToken) headers["X-Challenge-Token"] = challengeToken;
    return fetchImpl(`${baseUrl}/v1/triggers/${encodeURIComponent(trigger)}`, {
      method: "POST",
      headers,
      body: "{}",
      credentials: auth ? "omit" : "include",
    });
  }

  async function answerOf(response) {
    const retryAfter = response.headers.get("Retry-After");
    const requestId = response.headers.get("X-Request-ID");
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (body && body.error) {
      throw new TriggerProxyError(body.error.code, body.error.message, {
        status: response.status,
        retryAfter: retryAfter === null ? null : Number(retryAfter),
        requestId: body.error.request_id || requestId,
        opensAt: body.error.opens_at ?? null,
        shopper: body.data?.message || null,
      });
    }
    if (!response.ok) {
      // Nector's own refusal, relayed: its envelope holds data.message.
      const message = body?.data?.message || `the reward service answered ${response.status}`;
      throw new TriggerProxyError("upstream_refused", message, {
        status: response.status,
        requestId,
        shopper: body?.data?.message || null,
      });
    }
    return body;
  }

  /**
   * Calls one allow-listed trigger for the session's customer.
   * Resolves to { status, data, rateLimit, replayed, requestId }: data is Nector's answer
   * (with data.dry_run true when the trigger is a dry run: nothing was given).
   * Rejects with a TriggerProxyError whose code is the contract's error code.
   * challengeToken: the human check's token, when the trigger asks for one (X-Challenge-Token);
   * single-use, but a retry of this attempt may carry it again (the proxy replays the answer).
   */
  async function trigger(name, { idempotencyKey = newKey(), challengeToken = null } = {}) {
    let failures = 0;
    for (;;) {
      const auth = await bearer();
      let response;
      try {
        response = await send(name, idempotencyKey, auth, challengeToken);
      } catch (cause) {
        if (failures++ < retries) {
          await sleep(300 * 2 ** failures);
          continue; // same key: if the first try reached the proxy, this one replays it
        }
        const error = new TriggerProxyError(
          "network_error",
          "the reward service could not be reached",
        );
        error.idempotencyKey = idempotencyKey; // retry with it once back online
        throw error;
      }
      if (response.status === 409) {
        const retryAfter = Number(response.headers.get("Retry-After")) || 1;
        const code = (
          await response
            .clone()
            .json()
            .catch(() => null)
        )?.error?.code;
        if (code === "idempotency_in_flight") {
          await sleep(1000 * Math.max(1, retryAfter));
          continue;
        }
      }
      const data = await answerOf(response);
      if (data?.dry_run !== true) seen(data?.data?.wallet_reward?.balance, new Date());
      return {
        status: response.status,
        data,
        rateLimit: rateLimitOf(response.headers),
        replayed: response.headers.get("Idempotent-Replayed") === "true",
        requestId: response.headers.get("X-Request-ID"),
      };
    }
  }

  /**
   * What the proxy lets a widget show of a trigger: its reward range and limits, and when
   * configured its schedule ({open, opens_at, closes_at, ...}), coin budgets, dry_run and
   * challenge ({provider, site_key}).
   */
  async function triggerInfo(name) {
    const response = await fetchImpl(`${baseUrl}/v1/triggers/${encodeURIComponent(name)}`, {
      headers: { Accept: "application/json" },
      credentials: "omit",
    });
    return (await answerOf(response)).trigger;
  }

  let known = null; // the balance as last seen
  function seen(coins, at) {
    if (typeof coins === "number") known = { coins, at };
  }

  async function read(path, params = {}) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value === undefined || value === null) continue;
      for (const one of Array.isArray(value) ? value : [value]) query.append(key, String(one));
    }
    const headers = { Accept: "application/json", "X-Source": source };
    const auth = await bearer();
    if (auth) headers.Authorization = `Bearer ${auth}`;
    const suffix = query.toString() ? `?${query}` : "";
    const response = await fetchImpl(`${baseUrl}/api/v2/merchant/${path}${suffix}`, {
      headers,
      credentials: auth ? "omit" : "include",
    });
    const data = (await answerOf(response)).data;
    if (data && typeof data === "object" && response.headers.get("X-Cache") === "STALE") {
      const age = Number(response.headers.get("Age")) || 0;
      Object.defineProperty(data, "asOf", { value: new Date(Date.now() - age * 1000) });
    }
    return data;
  }

  async function lead() {
    const data = await read("leads/me");
    const item = data.item;
    if (item && data.asOf) Object.defineProperty(item, "asOf", { value: data.asOf });
    seen(item?.available, data.asOf || new Date());
    return item;
  }

  const paging = ({ page = 1, limit = 10 } = {}) => ({
    page,
    limit,
    sort: "created_at",
    sort_op: "DESC",
  });

  return {
    trigger,
    triggerInfo,
    /** The session token calls carry (a digest's is traded for first), or null for none. */
    session: bearer,
    /** The session's own lead: { _id, customer_id, name, available (the balance), ... }. */
    lead,
    /** The balance as last seen, { coins, at: Date }, or null: a lead read's or a reward's. */
    balance: () => known,
    walletTransactions: (options) => read("wallettransactions", paging(options)),
    coupons: (options) => read("coupons", paging(options)),
    coupon: async (id) => (await read(`coupons/${encodeURIComponent(id)}`)).item,
    activities: (options) => read("activities", paging(options)),
    /** Ways to earn; withActivities adds the customer's own activities on them. */
    triggers: ({ contentTypes = ["earn"], withActivities = false, ...options } = {}) =>
      read("triggers", {
        content_types: contentTypes,
        ...paging(options),
        lead_id: withActivities ? "me" : undefined,
      }),
    details: () => read("aggreegateddetails"),
    offers: ({ tier, timeSegment } = {}) =>
      read("aggreegatedoffers", { tier, time_segment: timeSegment }),
    offer: async (id) => (await read(`offers/${encodeURIComponent(id)}`)).item,
    entity: async (id) => (await read(`entities/${encodeURIComponent(id)}`)).item,
  };
}
