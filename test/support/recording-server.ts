import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach } from 'vitest';

/** One request as the server saw it, body included. */
export type Seen = {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
};
export type Respond = (req: IncomingMessage, res: ServerResponse) => void;

const servers: Server[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/**
 * A real HTTP server on a free 127.0.0.1 port that records each request (after reading its body)
 * and then responds; closed after the test, or earlier with `close()` (a refused connection).
 */
export async function serve(respond: Respond): Promise<{
  origin: string;
  seen: Seen[];
  /** TCP connections accepted so far. */
  connections: () => number;
  close: () => Promise<void>;
}> {
  const seen: Seen[] = [];
  let accepted = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      });
      respond(req, res);
    });
  });
  server.on('connection', () => accepted++);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const close = async () => {
    servers.splice(servers.indexOf(server), 1);
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  };
  return { origin: `http://127.0.0.1:${port}`, seen, connections: () => accepted, close };
}
