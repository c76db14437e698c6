/**
 * etcd's own API over its JSON gateway (etcd serves /v3/* on its client URL): what the test
 * needs to compact the store as kube-apiserver's compactor does, at a revision of its choosing.
 */
async function call(etcdUrl: string, path: string, body: unknown): Promise<unknown> {
  const res = await fetch(`${etcdUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`etcd ${path} answered ${res.status}: ${text}`);
  return JSON.parse(text) as unknown;
}

/** The store's current revision (the resourceVersion of the newest write). */
export async function currentRevision(etcdUrl: string): Promise<number> {
  // A range over one key reads the header at no cost; the key need not exist.
  const answer = (await call(etcdUrl, '/v3/kv/range', {
    key: Buffer.from('/').toString('base64'),
  })) as {
    header?: { revision?: string };
  };
  const revision = Number(answer.header?.revision);
  if (!Number.isSafeInteger(revision)) throw new Error('etcd gave no revision');
  return revision;
}

/** Compacts every revision before `revision` away, and waits until it is physically done. */
export async function compact(etcdUrl: string, revision: number): Promise<void> {
  await call(etcdUrl, '/v3/kv/compaction', { revision: String(revision), physical: true });
}
