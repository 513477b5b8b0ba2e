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

export class TriggerProxyError extends Error {
  constructor(code, message, { status = 0, retryAfter = null, requestId = null } = {}) {
    super(message);
    this.name = "TriggerProxyError";
    this.code = code; // one of the contract's codes, or "network_error"
    this.status = status;
    this.retryAfter = retryAfter; // seconds, when the proxy said when to come back
    this.requestId = requestId;
  }
}

function newKey() {
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

/**
 * createClient(options)
 *   baseUrl   where the proxy is ("" for the page's own origin)
 *   token     a session token for Authorization: Bearer; omit to use the session cookie
 *   source    "web" (default), "mobile" or "unix": sent as X-Source
 *   retries   how many times to retry one attempt after a network failure (default 2)
 *   fetch     a fetch implementation (default: the global one)
 */
export function createClient({
  baseUrl = "",
  token = null,
  source = "web",
  retries = 2,
  fetch: fetchImpl = globalThis.fetch.bind(globalThis),
} = {}) {
  async function send(trigger, key) {
    const headers = { "Content-Type": "application/json", "X-Source": source };
    if (token) headers.Authorization = `Bearer ${token}`;
    headers["Idempotency-Key"] = key;
    return fetchImpl(`${baseUrl}/v1/triggers/${encodeURIComponent(trigger)}`, {
      method: "POST",
      headers,
      body: "{}",
      credentials: token ? "omit" : "include",
    });
  }

  /**
   * Calls one allow-listed trigger for the session's customer.
   * Resolves to { status, data, rateLimit, replayed, requestId }: data is Nector's answer.
   * Rejects with a TriggerProxyError whose code is the contract's error code.
   */
  async function trigger(name, { idempotencyKey = newKey() } = {}) {
    let failures = 0;
    for (;;) {
      let response;
      try {
        response = await send(name, idempotencyKey);
      } catch (cause) {
        if (failures++ < retries) {
          await sleep(300 * 2 ** failures);
          continue; // same key: if the first try reached the proxy, this one replays it
        }
        throw new TriggerProxyError("network_error", "the reward service could not be reached");
      }
      const retryAfter = response.headers.get("Retry-After");
      const requestId = response.headers.get("X-Request-ID");
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      if (response.status === 409 && body?.error?.code === "idempotency_in_flight") {
        await sleep(1000 * Math.max(1, Number(retryAfter) || 1));
        continue;
      }
      if (body && body.error) {
        throw new TriggerProxyError(body.error.code, body.error.message, {
          status: response.status,
          retryAfter: retryAfter === null ? null : Number(retryAfter),
          requestId: body.error.request_id || requestId,
        });
      }
      if (!response.ok) {
        // Nector's own refusal, relayed: its envelope holds data.message.
        const message = body?.data?.message || `the reward service answered ${response.status}`;
        throw new TriggerProxyError("upstream_refused", message, {
          status: response.status,
          requestId,
        });
      }
      return {
        status: response.status,
        data: body,
        rateLimit: rateLimitOf(response.headers),
        replayed: response.headers.get("Idempotent-Replayed") === "true",
        requestId,
      };
    }
  }

  return { trigger };
}
