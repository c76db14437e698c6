import { KubeConfig, type RequestContext } from '@kubernetes/client-node';

type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

/**
 * The benchmark's load generator: a client-node KubeConfig whose API calls share one connection
 * pool per cluster and user. (The operator itself no longer uses client-node: src/kube/kube-client.ts.
 * This stays for the load generator, which is not operator runtime.)
 *
 *
 * client-node 2.0 builds a new undici Agent for every request (KubeConfig.createDispatcher), so
 * every call and every watch opens a fresh TLS connection: measured here, TLS handshakes were most
 * of the operator's CPU time at ~100 runs/s. Authentication headers are still applied per request
 * (tokens rotate); only the TLS connection settings are pooled, like client-node's own https.Agent
 * cache, which is keyed the same way.
 */
export class PooledKubeConfig extends KubeConfig {
  readonly #dispatchers = new Map<string, Dispatcher>();

  /** A pooled copy of `kc` (clusters, users, contexts and the current context). */
  static from(kc: KubeConfig): PooledKubeConfig {
    if (kc instanceof PooledKubeConfig) return kc;
    const pooled = new PooledKubeConfig();
    pooled.loadFromOptions({
      clusters: kc.clusters,
      users: kc.users,
      contexts: kc.contexts,
      currentContext: kc.currentContext,
    });
    return pooled;
  }

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    const key = JSON.stringify([this.getCurrentCluster()?.name, this.getCurrentUser()?.name]);
    const pooled = this.#dispatchers.get(key);
    if (pooled) {
      // The headers client-node's applySecurityAuthentication sets, without the undici Agent it
      // would build (and we would close) for every request.
      const options: { headers?: Record<string, unknown> } = {};
      await this.applyToHTTPSOptions(options);
      const user = this.getCurrentUser();
      if (user?.username) {
        const auth = Buffer.from(`${user.username}:${user.password}`).toString('base64');
        context.setHeaderParam('Authorization', `Basic ${auth}`);
      }
      for (const [name, value] of Object.entries(options.headers ?? {})) {
        context.setHeaderParam(name, `${String(value)}`);
      }
      context.setDispatcher(pooled);
      return;
    }
    await super.applySecurityAuthentication(context);
    const fresh = context.getDispatcher();
    if (!fresh) return;
    this.#dispatchers.set(key, fresh);
  }

  /** Closes the pooled connections (on shutdown). */
  async close(): Promise<void> {
    const dispatchers = [...this.#dispatchers.values()];
    this.#dispatchers.clear();
    await Promise.all(dispatchers.map((d) => d.close()));
  }
}
