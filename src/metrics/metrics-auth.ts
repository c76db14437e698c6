import { createHmac, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { KubeClient } from '../kube/kube-client.ts';
import { isRecord } from '../kube/kube-object.ts';

/**
 * Authentication and authorization of /metrics scrapes, delegated to the API server like
 * controller-runtime's filters.WithAuthenticationAndAuthorization: the bearer token is checked by
 * a TokenReview (authentication.k8s.io/v1), then the user it names must be allowed `get` on the
 * non-resource URL `/metrics` by a SubjectAccessReview (authorization.k8s.io/v1). The operator's
 * own identity creates the reviews, so its ClusterRole needs `create` on tokenreviews and
 * subjectaccessreviews; the scraper's needs `get` on nonResourceURLs ["/metrics"].
 *
 * The decision logic (DelegatingAuth) is separate from the API calls (ReviewClient) so that it
 * can be tested without a cluster.
 */

export interface UserInfo {
  readonly username: string;
  readonly uid?: string;
  readonly groups: readonly string[];
  readonly extra: Readonly<Record<string, readonly string[]>>;
}

export type TokenReviewResult =
  | { readonly authenticated: true; readonly user: UserInfo }
  | { readonly authenticated: false; readonly reason: string };

export interface AccessReviewRequest {
  readonly user: UserInfo;
  /** Lower-case HTTP method, as the API server's authorizers expect ("get"). */
  readonly verb: string;
  readonly path: string;
}

export interface AccessReviewResult {
  readonly allowed: boolean;
  readonly reason: string;
}

/** The two API calls. Throwing means the review could not be made (not cached; answered 500). */
export interface ReviewClient {
  reviewToken(token: string): Promise<TokenReviewResult>;
  reviewAccess(request: AccessReviewRequest): Promise<AccessReviewResult>;
}

export type AuthDecision =
  | { readonly status: 200; readonly user: UserInfo }
  | { readonly status: 401; readonly reason: string }
  | { readonly status: 403; readonly user: UserInfo; readonly reason: string }
  | { readonly status: 500; readonly reason: string };

export interface DelegatingAuthOptions {
  /** How long an authenticated token is trusted without a new TokenReview; default 10 s. */
  readonly authenticatedTtlMs?: number;
  /** How long a rejected token stays rejected; default 10 s. */
  readonly unauthenticatedTtlMs?: number;
  /** How long an allowed SubjectAccessReview is reused; default 10 s. */
  readonly allowedTtlMs?: number;
  /** How long a denied SubjectAccessReview is reused; default 10 s. */
  readonly deniedTtlMs?: number;
  /** Entries per cache (tokens, access decisions); the oldest go first; default 1024. */
  readonly maxEntries?: number;
  /** Clock in milliseconds; default Date.now. */
  readonly now?: () => number;
}

export const DELEGATING_AUTH_DEFAULTS = {
  authenticatedTtlMs: 10_000,
  unauthenticatedTtlMs: 10_000,
  allowedTtlMs: 10_000,
  deniedTtlMs: 10_000,
  maxEntries: 1024,
} as const;

/**
 * The token of an `Authorization: Bearer <token>` header, as the API server's bearer-token
 * authenticator reads it (scheme case-insensitive); undefined when there is none.
 */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const parts = header.trim().split(' ');
  if (parts.length < 2 || parts[0]?.toLowerCase() !== 'bearer') return undefined;
  const token = parts[1] ?? '';
  return token === '' ? undefined : token;
}

/**
 * Decides a request from its Authorization header: 401 without a valid bearer token, 403 when
 * the user may not `verb` the path, 200 otherwise; 500 when a review could not be made. Results
 * are cached briefly (tokens keyed by an HMAC, never stored in the clear) and concurrent
 * identical reviews share one API call.
 */
export class DelegatingAuth {
  readonly #client: ReviewClient;
  readonly #tokens: TtlCache<TokenReviewResult>;
  readonly #access: TtlCache<AccessReviewResult>;
  readonly #ttl: Required<Omit<DelegatingAuthOptions, 'maxEntries' | 'now'>>;
  readonly #hmacKey = randomBytes(32);

  constructor(client: ReviewClient, options: DelegatingAuthOptions = {}) {
    this.#client = client;
    const maxEntries = options.maxEntries ?? DELEGATING_AUTH_DEFAULTS.maxEntries;
    const now = options.now ?? Date.now;
    this.#tokens = new TtlCache(maxEntries, now);
    this.#access = new TtlCache(maxEntries, now);
    this.#ttl = {
      authenticatedTtlMs: options.authenticatedTtlMs ?? DELEGATING_AUTH_DEFAULTS.authenticatedTtlMs,
      unauthenticatedTtlMs:
        options.unauthenticatedTtlMs ?? DELEGATING_AUTH_DEFAULTS.unauthenticatedTtlMs,
      allowedTtlMs: options.allowedTtlMs ?? DELEGATING_AUTH_DEFAULTS.allowedTtlMs,
      deniedTtlMs: options.deniedTtlMs ?? DELEGATING_AUTH_DEFAULTS.deniedTtlMs,
    };
  }

  async check(
    authorization: string | undefined,
    verb: string,
    path: string,
  ): Promise<AuthDecision> {
    const token = bearerToken(authorization);
    if (token === undefined) return { status: 401, reason: 'no bearer token' };

    let identity: TokenReviewResult;
    try {
      identity = await this.#tokens.getOrLoad(
        createHmac('sha256', this.#hmacKey).update(token).digest('base64'),
        () => this.#client.reviewToken(token),
        (result) =>
          result.authenticated ? this.#ttl.authenticatedTtlMs : this.#ttl.unauthenticatedTtlMs,
      );
    } catch (error) {
      return { status: 500, reason: `TokenReview failed: ${message(error)}` };
    }
    if (!identity.authenticated) return { status: 401, reason: identity.reason };

    const { user } = identity;
    let access: AccessReviewResult;
    try {
      access = await this.#access.getOrLoad(
        accessKey(user, verb, path),
        () => this.#client.reviewAccess({ user, verb, path }),
        (result) => (result.allowed ? this.#ttl.allowedTtlMs : this.#ttl.deniedTtlMs),
      );
    } catch (error) {
      return { status: 500, reason: `SubjectAccessReview failed: ${message(error)}` };
    }
    return access.allowed ? { status: 200, user } : { status: 403, user, reason: access.reason };
  }

  /** Entries currently cached (tokens, access decisions), for tests. */
  get cacheSizes(): { readonly tokens: number; readonly access: number } {
    return { tokens: this.#tokens.size, access: this.#access.size };
  }
}

function accessKey(user: UserInfo, verb: string, path: string): string {
  const extra = Object.keys(user.extra)
    .sort()
    .map((key) => [key, user.extra[key]]);
  return JSON.stringify([user.username, user.uid ?? '', user.groups, extra, verb, path]);
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A bounded map whose entries expire, with single flight: concurrent loads of one key share a
 * promise. Rejections are not cached. Past `maxEntries`, the least recently stored go first.
 * Storage, bound and TTLs are lru-cache's; this adds the single flight, a TTL chosen per value
 * (<= 0: not stored) and expiry as soon as the TTL has passed (lru-cache's own staleness check
 * would still return the entry at that very millisecond).
 */
export class TtlCache<V extends NonNullable<unknown>> {
  readonly #entries: LRUCache<string, V>;
  readonly #loading = new Map<string, Promise<V>>();

  constructor(maxEntries: number, now: () => number = Date.now) {
    this.#entries = new LRUCache<string, V>({
      max: Math.max(1, Math.floor(maxEntries)),
      perf: { now },
      // Read the clock on every check instead of caching it for a millisecond with a timer.
      ttlResolution: 0,
    });
  }

  /** Entries stored, expired ones included until they are read. */
  get size(): number {
    return this.#entries.size;
  }

  get(key: string): V | undefined {
    if (this.#entries.getRemainingTTL(key) <= 0) {
      this.#entries.delete(key);
      return undefined;
    }
    // peek, not get: reading does not move an entry back in line for eviction.
    return this.#entries.peek(key);
  }

  set(key: string, value: V, ttlMs: number): void {
    this.#entries.delete(key);
    if (ttlMs <= 0) return;
    this.#entries.set(key, value, { ttl: ttlMs });
  }

  getOrLoad(key: string, load: () => Promise<V>, ttlOf: (value: V) => number): Promise<V> {
    const cached = this.get(key);
    if (cached !== undefined) return Promise.resolve(cached);
    const pending = this.#loading.get(key);
    if (pending) return pending;
    const loading = (async () => {
      try {
        const value = await load();
        this.set(key, value, ttlOf(value));
        return value;
      } finally {
        this.#loading.delete(key);
      }
    })();
    this.#loading.set(key, loading);
    return loading;
  }
}

export interface KubeReviewClientOptions {
  /**
   * Audiences the token must be issued for; default none, which the API server reads as its own
   * audiences (what controller-runtime does).
   */
  readonly audiences?: readonly string[];
}

/** The ReviewClient that asks the API server, as the identity of `client`. */
export function kubeReviewClient(
  client: KubeClient,
  options: KubeReviewClientOptions = {},
): ReviewClient {
  const create = async (path: string, body: object): Promise<Record<string, unknown>> => {
    const review = await client.request('POST', path, { body: JSON.stringify(body) });
    return isRecord(review) && isRecord(review['status']) ? review['status'] : {};
  };
  return {
    async reviewToken(token) {
      const status = await create('/apis/authentication.k8s.io/v1/tokenreviews', {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token, ...(options.audiences ? { audiences: [...options.audiences] } : {}) },
      });
      const user = isRecord(status['user']) ? status['user'] : {};
      const username = stringOf(user['username']);
      if (status['authenticated'] !== true || !username) {
        return {
          authenticated: false,
          reason: stringOf(status['error']) || 'token not authenticated',
        };
      }
      return { authenticated: true, user: userInfoOf(username, user) };
    },
    async reviewAccess({ user, verb, path }) {
      const status = await create('/apis/authorization.k8s.io/v1/subjectaccessreviews', {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec: {
          user: user.username,
          ...(user.uid !== undefined ? { uid: user.uid } : {}),
          groups: [...user.groups],
          extra: Object.fromEntries(Object.entries(user.extra).map(([k, v]) => [k, [...v]])),
          nonResourceAttributes: { path, verb },
        },
      });
      const allowed = status['allowed'] === true && status['denied'] !== true;
      return {
        allowed,
        reason: stringOf(status['reason']) || stringOf(status['evaluationError']),
      };
    },
  };
}

function stringOf(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** authentication.k8s.io/v1 UserInfo, from the TokenReview's status. */
function userInfoOf(username: string, user: Record<string, unknown>): UserInfo {
  const uid = stringOf(user['uid']);
  const groups = Array.isArray(user['groups'])
    ? user['groups'].filter((g): g is string => typeof g === 'string')
    : [];
  const extra: Record<string, string[]> = {};
  if (isRecord(user['extra'])) {
    for (const [key, values] of Object.entries(user['extra'])) {
      if (Array.isArray(values)) {
        extra[key] = values.filter((v): v is string => typeof v === 'string');
      }
    }
  }
  return { username, ...(uid ? { uid } : {}), groups, extra };
}
