import type { AddressInfo } from 'node:net';
import { createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP relay between one client (the operator) and a server (kube-apiserver) that can cut the
 * network between them, as a partition does: while cut, bytes stop flowing both ways on the
 * open connections and new connections are accepted but go nowhere (packets dropped, not
 * refused: clients see silence, not an error). Healing ends the connections that lived through
 * the cut with a reset, as TCP does once retransmissions time out, and relays new ones again.
 * TLS passes through untouched (the API server's certificate names 127.0.0.1, any port).
 */
export class Partition {
  readonly port: number;
  readonly #server: Server;
  readonly #target: { host: string; port: number };
  readonly #pairs = new Set<[Socket, Socket | undefined]>();
  /** Connections left silent by `heal('silent')`, closed only by their clients (or `close`). */
  readonly #mute = new Set<Socket>();
  #cut = false;

  private constructor(server: Server, port: number, target: { host: string; port: number }) {
    this.#server = server;
    this.port = port;
    this.#target = target;
  }

  static async start(target: { host: string; port: number }): Promise<Partition> {
    let relay: Partition | undefined;
    const server = createServer((client) => relay?.accept(client));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    relay = new Partition(server, (server.address() as AddressInfo).port, target);
    return relay;
  }

  /** Connections open now, through the relay or held by the cut. */
  get connections(): number {
    return this.#pairs.size;
  }

  get isCut(): boolean {
    return this.#cut;
  }

  accept(client: Socket): void {
    client.on('error', () => {});
    if (this.#cut) {
      // Held in silence until the partition heals (then reset, or left silent).
      const pair: [Socket, Socket | undefined] = [client, undefined];
      this.#pairs.add(pair);
      client.pause();
      client.on('close', () => this.#pairs.delete(pair));
      return;
    }
    const upstream = createConnection(this.#target);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    const pair: [Socket, Socket | undefined] = [client, upstream];
    this.#pairs.add(pair);
    const forget = () => {
      this.#pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', forget);
    upstream.on('close', forget);
    client.on('data', (chunk: Buffer) => {
      if (!this.#cut) upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!this.#cut) client.write(chunk);
    });
  }

  /** Cuts the network: from now on nothing gets through, in either direction. */
  cut(): void {
    this.#cut = true;
  }

  /**
   * Heals it: new connections are relayed again. The connections that lived through the cut
   * are reset (`reset`: the peer answers the first retransmission with RST), or stay silent for
   * good (`silent`: the state behind them is gone and nothing ever answers, as after a load
   * balancer or NAT lost its table; the client must notice by itself).
   */
  heal(old: 'reset' | 'silent'): void {
    const survivors = [...this.#pairs];
    this.#pairs.clear();
    this.#cut = false;
    for (const [client, upstream] of survivors) {
      // Detached first: the upstream's close must not close the client.
      upstream?.removeAllListeners('close');
      client.removeAllListeners('close');
      upstream?.destroy();
      if (old === 'reset') {
        client.resetAndDestroy();
      } else {
        // Kept open and mute: bytes from the client go nowhere, nothing comes back.
        client.removeAllListeners('data');
        client.on('data', () => {});
        this.#mute.add(client);
        client.on('close', () => this.#mute.delete(client));
      }
    }
  }

  async close(): Promise<void> {
    this.heal('reset');
    for (const socket of this.#mute) socket.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}
