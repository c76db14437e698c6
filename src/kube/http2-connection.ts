import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect as http2Connect,
  type OutgoingHttpHeaders,
} from 'node:http2';
import { isIP } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { abortable } from '../util/abortable.ts';
import type { TlsSettings } from './cluster-access.ts';

export interface Http2ConnectionOptions {
  /**
   * A session that read nothing for this long is pinged; default 30 s, client-go's
   * ReadIdleTimeout.
   * With every request on one connection, a connection that died in silence would otherwise
   * hold every request and watch until their own timeouts.
   */
  readonly readIdleMs?: number;
  /** A ping not answered within this long closes the session; default 15 s, client-go's. */
  readonly pingTimeoutMs?: number;
}

/** What the server answered in ALPN: 'h1' means it does not speak HTTP/2 (use HTTP/1.1). */
type Negotiated = { readonly kind: 'h2'; readonly entry: SessionEntry } | { readonly kind: 'h1' };

interface SessionEntry {
  readonly session: ClientHttp2Session;
  /** Streams opened and not closed yet (Node keeps no public count). */
  open: number;
}

// Our receive windows: Node's defaults (64 KiB) would stall a large LIST on WINDOW_UPDATE round
// trips. client-go's transport uses 4 MiB per stream as well.
const STREAM_WINDOW = 4 * 2 ** 20;
const SESSION_WINDOW = 16 * 2 ** 20;
// nghttp2's bookkeeping limit before Node refuses new streams (default 10 MB): a large LIST in
// flight next to the watches must not make the next request fail.
const MAX_SESSION_MEMORY_MB = 64;
const CONNECT_TIMEOUT_MS = 30_000;

/**
 * One multiplexed HTTP/2 connection to the API server, as client-go keeps: every request and
 * watch is a stream on it, so a request costs frames on an open TLS session rather than an
 * HTTP/1.1 exchange with its own socket (measured in Node: about a fifth less CPU per request,
 * docs/performance.md). A new session is opened when the last one closes, fails, or is told to
 * go away (an API server shutting down drains its streams and the next requests go to a new
 * connection). When the server does not offer h2 in ALPN, `open()` answers undefined for good
 * and the caller keeps to HTTP/1.1.
 */
export class Http2Connection {
  readonly #origin: URL;
  readonly #tls: TlsSettings;
  readonly #readIdleMs: number;
  readonly #pingTimeoutMs: number;
  #current: Promise<Negotiated> | undefined;
  #http1Only = false;
  #closed = false;
  readonly #sessions = new Set<ClientHttp2Session>();

  constructor(origin: URL, tls: TlsSettings, options: Http2ConnectionOptions = {}) {
    this.#origin = origin;
    this.#tls = tls;
    this.#readIdleMs = options.readIdleMs ?? 30_000;
    this.#pingTimeoutMs = options.pingTimeoutMs ?? 15_000;
  }

  /**
   * Opens a stream for the request (`hasBody`: a body follows); undefined when the server speaks only HTTP/1.1. Rejects
   * with the connection's error when the API server cannot be reached.
   */
  async request(
    headers: OutgoingHttpHeaders,
    hasBody: boolean,
    signal: AbortSignal | undefined,
  ): Promise<ClientHttp2Stream | undefined> {
    if (this.#http1Only) return undefined;
    if (this.#closed) throw new Error('the Kubernetes client is closed');
    let pending = this.#negotiated();
    let negotiated = await (signal ? abortable(pending, signal) : pending);
    // Dead before its 'close' event retired it: one new session, then it is the caller's error.
    if (
      negotiated.kind === 'h2' &&
      (negotiated.entry.session.closed || negotiated.entry.session.destroyed)
    ) {
      if (this.#current === pending) this.#current = undefined;
      pending = this.#negotiated();
      negotiated = await (signal ? abortable(pending, signal) : pending);
    }
    if (negotiated.kind === 'h1') return undefined;
    const { entry } = negotiated;
    const { session } = entry;
    // Explicit: Node would end the request side of a DELETE at once, and the operator's
    // deletes carry preconditions in their body.
    const stream = session.request(headers, { endStream: !hasBody });
    // A session with streams open keeps the process alive, an idle one does not (as an
    // HTTP/1.1 Agent's free sockets do not): a CLI exits once its last request is answered.
    if (entry.open++ === 0) session.ref();
    stream.once('close', () => {
      if (--entry.open === 0 && !session.destroyed) session.unref();
    });
    return stream;
  }

  /** Closes every session; streams in flight fail. */
  close(): void {
    this.#closed = true;
    for (const session of this.#sessions) session.destroy();
    this.#sessions.clear();
    this.#current = undefined;
  }

  #negotiated(): Promise<Negotiated> {
    const current = this.#current;
    if (current) return current;
    const opening = this.#open().then(
      (negotiated) => {
        if (negotiated.kind === 'h1') this.#http1Only = true;
        return negotiated;
      },
      (error: unknown) => {
        // The next request tries a new connection, as an Agent tries a new socket.
        if (this.#current === opening) this.#current = undefined;
        throw error;
      },
    );
    this.#current = opening;
    return opening;
  }

  #open(): Promise<Negotiated> {
    const tls = this.#tls;
    const host = this.#origin.hostname.replace(/^\[(.*)\]$/, '$1');
    const servername = tls.servername ?? (isIP(host) ? undefined : host);
    return new Promise<Negotiated>((resolve, reject) => {
      const socket: TLSSocket = tlsConnect({
        host,
        port: Number(this.#origin.port || 443),
        ALPNProtocols: ['h2', 'http/1.1'],
        ...(tls.ca ? { ca: tls.ca } : {}),
        ...(tls.cert ? { cert: tls.cert } : {}),
        ...(tls.key ? { key: tls.key } : {}),
        // SNI as https.Agent sends it: the tls-server-name, else the host unless it is an IP
        // (an API server behind an SNI-routing load balancer picks its certificate by it).
        ...(servername ? { servername } : {}),
        rejectUnauthorized: tls.rejectUnauthorized,
      });
      const onError = (error: Error) => reject(error);
      socket.once('error', onError);
      // client-go's dial (30 s) and TLS handshake (10 s) timeouts, as one: a blackholed address
      // would otherwise hold every request's connection until the kernel gives up on it.
      socket.setTimeout(CONNECT_TIMEOUT_MS, () => {
        socket.destroy(
          new Error(`could not connect to the API server within ${CONNECT_TIMEOUT_MS} ms`),
        );
      });
      socket.once('secureConnect', () => {
        socket.setTimeout(0);
        socket.removeListener('error', onError);
        if (socket.alpnProtocol !== 'h2') {
          socket.destroy();
          resolve({ kind: 'h1' });
          return;
        }
        resolve({ kind: 'h2', entry: { session: this.#session(socket), open: 0 } });
      });
    });
  }

  #session(socket: TLSSocket): ClientHttp2Session {
    const session = http2Connect(this.#origin.origin, {
      createConnection: () => socket,
      settings: { initialWindowSize: STREAM_WINDOW, enablePush: false },
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
    });
    this.#sessions.add(session);
    const mine = this.#current;
    const retire = (): void => {
      if (this.#current === mine) this.#current = undefined;
    };
    session.once('connect', () => session.setLocalWindowSize(SESSION_WINDOW));
    // Streams already open finish on a session told to go away; new ones need a new session.
    session.once('goaway', retire);
    session.once('close', () => {
      retire();
      this.#sessions.delete(session);
    });
    // Errors reach the streams in flight; without this listener one would be uncaught.
    session.on('error', retire);
    this.#watchReads(session, socket);
    session.unref();
    return session;
  }

  /**
   * client-go's ReadIdleTimeout: a session that has read nothing for readIdleMs is pinged, and
   * destroyed when the ping goes unanswered; its streams then fail and the next request opens a
   * new session. Reads, not any activity: requests still being written into a dead connection
   * must not count as life. Checked by polling the TLS socket's decrypted byte count (the
   * session reads the socket natively, so no 'data' event shows it).
   */
  #watchReads(session: ClientHttp2Session, socket: TLSSocket): void {
    let lastRead = socket.bytesRead;
    let lastReadAt = Date.now();
    let pinging = false;
    // Polled at up to 5 s so that a dead session is found within readIdle + 5 s + pingTimeout
    // (50 s with the defaults), before the requests on it reach their own 60 s timeout.
    const check = setInterval(
      () => {
        if (session.destroyed || session.closed) {
          clearInterval(check);
          return;
        }
        const read = socket.bytesRead;
        if (read !== lastRead) {
          lastRead = read;
          lastReadAt = Date.now();
          return;
        }
        if (pinging || Date.now() - lastReadAt < this.#readIdleMs) return;
        pinging = true;
        const timeout = setTimeout(() => {
          session.destroy(
            new Error(
              `the API server did not answer an HTTP/2 ping within ${this.#pingTimeoutMs} ms`,
            ),
          );
        }, this.#pingTimeoutMs);
        timeout.unref();
        const sent = session.ping((error) => {
          clearTimeout(timeout);
          pinging = false;
          if (error && !session.destroyed) session.destroy(error);
        });
        if (!sent) {
          clearTimeout(timeout);
          pinging = false;
        }
      },
      Math.min(this.#readIdleMs, 5_000),
    );
    check.unref();
    session.once('close', () => clearInterval(check));
  }
}
