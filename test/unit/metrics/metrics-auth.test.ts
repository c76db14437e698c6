import { describe, expect, it } from 'vitest';
import {
  type AccessReviewRequest,
  type AccessReviewResult,
  bearerToken,
  DELEGATING_AUTH_DEFAULTS,
  DelegatingAuth,
  type ReviewClient,
  type TokenReviewResult,
  TtlCache,
  type UserInfo,
} from '../../../src/metrics/metrics-auth.ts';

const prometheus: UserInfo = {
  username: 'system:serviceaccount:monitoring:prometheus',
  uid: 'b9c7',
  groups: ['system:serviceaccounts', 'system:serviceaccounts:monitoring', 'system:authenticated'],
  extra: { 'authentication.kubernetes.io/pod-name': ['prometheus-0'] },
};
const stranger: UserInfo = { username: 'system:serviceaccount:default:app', groups: [], extra: {} };

/** A fake API server: tokens map to users; `allowed` names who may get /metrics. */
function fakeClient(
  tokens: Record<string, UserInfo>,
  allowed: ReadonlySet<string> = new Set([prometheus.username]),
) {
  const calls = { tokenReviews: [] as string[], accessReviews: [] as AccessReviewRequest[] };
  const state = { fail: undefined as Error | undefined, delayMs: 0 };
  const client: ReviewClient = {
    async reviewToken(token): Promise<TokenReviewResult> {
      calls.tokenReviews.push(token);
      if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs));
      if (state.fail) throw state.fail;
      const user = tokens[token];
      return user
        ? { authenticated: true, user }
        : { authenticated: false, reason: 'invalid bearer token' };
    },
    async reviewAccess(request): Promise<AccessReviewResult> {
      calls.accessReviews.push(request);
      if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs));
      if (state.fail) throw state.fail;
      return allowed.has(request.user.username) &&
        request.verb === 'get' &&
        request.path === '/metrics'
        ? { allowed: true, reason: 'RBAC: allowed by ClusterRoleBinding "metrics-reader"' }
        : { allowed: false, reason: '' };
    },
  };
  return { client, calls, state };
}

function clock(start = 1_000_000) {
  const c = { now: start };
  return { c, now: () => c.now };
}

describe('bearerToken', () => {
  it.each([
    [undefined, undefined],
    ['', undefined],
    ['Bearer', undefined],
    ['Bearer ', undefined],
    ['Basic dXNlcjpwYXNz', undefined],
    ['Bearer abc', 'abc'],
    ['bearer abc', 'abc'],
    ['BEARER abc', 'abc'],
    ['  Bearer abc  ', 'abc'],
    ['Bearer abc extra', 'abc'],
    ['Bearer  abc', undefined],
  ])('%j -> %j', (header, token) => {
    expect(bearerToken(header)).toBe(token);
  });
});

describe('DelegatingAuth', () => {
  it('answers 401 without a bearer token, and asks the API server nothing', async () => {
    const { client, calls } = fakeClient({});
    const auth = new DelegatingAuth(client);
    expect((await auth.check(undefined, 'get', '/metrics')).status).toBe(401);
    expect((await auth.check('Basic eDp5', 'get', '/metrics')).status).toBe(401);
    expect(calls.tokenReviews).toEqual([]);
  });

  it('answers 401 for a token the TokenReview rejects, without an access review', async () => {
    const { client, calls } = fakeClient({});
    const decision = await new DelegatingAuth(client).check('Bearer garbage', 'get', '/metrics');
    expect(decision).toEqual({ status: 401, reason: 'invalid bearer token' });
    expect(calls.tokenReviews).toEqual(['garbage']);
    expect(calls.accessReviews).toEqual([]);
  });

  it('answers 200 for an authenticated user allowed to get /metrics', async () => {
    const { client, calls } = fakeClient({ good: prometheus });
    const decision = await new DelegatingAuth(client).check('Bearer good', 'get', '/metrics');
    expect(decision).toEqual({ status: 200, user: prometheus });
    // The access review carries the whole identity (uid, groups, extra) from the TokenReview.
    expect(calls.accessReviews).toEqual([{ user: prometheus, verb: 'get', path: '/metrics' }]);
  });

  it('answers 403 for an authenticated user without the permission', async () => {
    const { client } = fakeClient({ other: stranger });
    const decision = await new DelegatingAuth(client).check('Bearer other', 'get', '/metrics');
    expect(decision).toMatchObject({ status: 403, user: { username: stranger.username } });
  });

  it('reuses a positive result for the TTL, then reviews again', async () => {
    const { client, calls } = fakeClient({ good: prometheus });
    const { c, now } = clock();
    const auth = new DelegatingAuth(client, { now });
    for (let i = 0; i < 5; i++)
      expect((await auth.check('Bearer good', 'get', '/metrics')).status).toBe(200);
    expect(calls.tokenReviews).toHaveLength(1);
    expect(calls.accessReviews).toHaveLength(1);
    c.now += DELEGATING_AUTH_DEFAULTS.authenticatedTtlMs - 1;
    await auth.check('Bearer good', 'get', '/metrics');
    expect(calls.tokenReviews).toHaveLength(1);
    c.now += 1;
    await auth.check('Bearer good', 'get', '/metrics');
    expect(calls.tokenReviews).toHaveLength(2);
    expect(calls.accessReviews).toHaveLength(2);
  });

  it('reuses rejections and denials for their own TTLs', async () => {
    const { client, calls } = fakeClient({ other: stranger });
    const { c, now } = clock();
    const auth = new DelegatingAuth(client, {
      now,
      unauthenticatedTtlMs: 1_000,
      deniedTtlMs: 2_000,
      authenticatedTtlMs: 60_000,
    });
    await auth.check('Bearer garbage', 'get', '/metrics');
    await auth.check('Bearer garbage', 'get', '/metrics');
    await auth.check('Bearer other', 'get', '/metrics');
    await auth.check('Bearer other', 'get', '/metrics');
    expect(calls.tokenReviews).toEqual(['garbage', 'other']);
    expect(calls.accessReviews).toHaveLength(1);
    c.now += 1_000; // the rejection expires; the denial does not yet
    await auth.check('Bearer garbage', 'get', '/metrics');
    await auth.check('Bearer other', 'get', '/metrics');
    expect(calls.tokenReviews).toEqual(['garbage', 'other', 'garbage']);
    expect(calls.accessReviews).toHaveLength(1);
    c.now += 1_000;
    await auth.check('Bearer other', 'get', '/metrics');
    expect(calls.accessReviews).toHaveLength(2);
  });

  it('notices a permission granted after a denial once the denial expires', async () => {
    const allowed = new Set<string>();
    const { client } = fakeClient({ other: stranger }, allowed);
    const { c, now } = clock();
    const auth = new DelegatingAuth(client, { now });
    expect((await auth.check('Bearer other', 'get', '/metrics')).status).toBe(403);
    allowed.add(stranger.username);
    expect((await auth.check('Bearer other', 'get', '/metrics')).status).toBe(403);
    c.now += DELEGATING_AUTH_DEFAULTS.deniedTtlMs;
    expect((await auth.check('Bearer other', 'get', '/metrics')).status).toBe(200);
  });

  it('keys access decisions by verb and path as well as the user', async () => {
    const { client, calls } = fakeClient({ good: prometheus });
    const auth = new DelegatingAuth(client);
    expect((await auth.check('Bearer good', 'get', '/metrics')).status).toBe(200);
    expect((await auth.check('Bearer good', 'post', '/metrics')).status).toBe(403);
    expect((await auth.check('Bearer good', 'get', '/debug')).status).toBe(403);
    expect(calls.accessReviews).toHaveLength(3);
  });

  it('answers 500 when a review cannot be made, and does not cache the failure', async () => {
    const { client, calls, state } = fakeClient({ good: prometheus });
    const auth = new DelegatingAuth(client);
    state.fail = new Error('connect ECONNREFUSED');
    const decision = await auth.check('Bearer good', 'get', '/metrics');
    expect(decision.status).toBe(500);
    expect(decision).toMatchObject({ reason: expect.stringContaining('TokenReview failed') });
    state.fail = undefined;
    expect((await auth.check('Bearer good', 'get', '/metrics')).status).toBe(200);
    expect(calls.tokenReviews).toHaveLength(2);
  });

  it('answers 500 when the access review fails after authentication', async () => {
    const { client, state } = fakeClient({ good: prometheus });
    const auth = new DelegatingAuth(client);
    await auth.check('Bearer good', 'get', '/debug'); // caches the token
    state.fail = new Error('forbidden: cannot create subjectaccessreviews');
    const decision = await auth.check('Bearer good', 'get', '/metrics');
    expect(decision).toMatchObject({
      status: 500,
      reason: expect.stringContaining('SubjectAccessReview failed'),
    });
  });

  it('shares one review among concurrent identical requests', async () => {
    const { client, calls, state } = fakeClient({ good: prometheus });
    state.delayMs = 20;
    const auth = new DelegatingAuth(client);
    const decisions = await Promise.all(
      Array.from({ length: 10 }, () => auth.check('Bearer good', 'get', '/metrics')),
    );
    expect(decisions.every((d) => d.status === 200)).toBe(true);
    expect(calls.tokenReviews).toHaveLength(1);
    expect(calls.accessReviews).toHaveLength(1);
  });

  it('bounds its caches', async () => {
    const tokens: Record<string, UserInfo> = {};
    for (let i = 0; i < 50; i++) tokens[`t${i}`] = { ...stranger, username: `user-${i}` };
    const { client } = fakeClient(tokens);
    const auth = new DelegatingAuth(client, { maxEntries: 8 });
    for (let i = 0; i < 50; i++) await auth.check(`Bearer t${i}`, 'get', '/metrics');
    for (let i = 0; i < 50; i++) await auth.check(`Bearer nope${i}`, 'get', '/metrics');
    expect(auth.cacheSizes).toEqual({ tokens: 8, access: 8 });
  });
});

describe('TtlCache', () => {
  it('expires entries, evicts the oldest past the bound, and does not store ttl <= 0', () => {
    const { c, now } = clock();
    const cache = new TtlCache<number>(2, now);
    cache.set('a', 1, 100);
    cache.set('b', 2, 100);
    cache.set('c', 3, 100);
    expect([cache.get('a'), cache.get('b'), cache.get('c')]).toEqual([undefined, 2, 3]);
    c.now += 100;
    expect(cache.get('b')).toBeUndefined();
    expect(cache.size).toBe(1); // c is still there until read
    cache.set('d', 4, 0);
    expect(cache.get('d')).toBeUndefined();
  });

  it('re-setting a key refreshes its place in line', () => {
    const cache = new TtlCache<number>(2);
    cache.set('a', 1, 1_000);
    cache.set('b', 2, 1_000);
    cache.set('a', 10, 1_000);
    cache.set('c', 3, 1_000);
    expect([cache.get('a'), cache.get('b'), cache.get('c')]).toEqual([10, undefined, 3]);
  });

  it('does not cache rejected loads', async () => {
    const cache = new TtlCache<number>(4);
    let calls = 0;
    const load = async () => {
      calls++;
      if (calls === 1) throw new Error('first fails');
      return 7;
    };
    await expect(cache.getOrLoad('k', load, () => 1_000)).rejects.toThrow('first fails');
    expect(await cache.getOrLoad('k', load, () => 1_000)).toBe(7);
    expect(await cache.getOrLoad('k', load, () => 1_000)).toBe(7);
    expect(calls).toBe(2);
  });
});
