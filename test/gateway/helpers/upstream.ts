// A small real application for gateway tests: echo, slow, streamed and counting endpoints, plus a
// WebSocket echo, on a real port. It can be stopped and started again on the same port.
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer } from 'ws';

export interface TestUpstream {
  url: string;
  port: number;
  /** Requests that reached the application, by path. */
  hits: Map<string, number>;
  /** TCP connections the application accepted. */
  connections: number;
  stop(): Promise<void>;
  start(): Promise<void>;
}

export async function startUpstream(port = 0): Promise<TestUpstream> {
  const sockets = new Set<Socket>();
  let server: http.Server | null = null;
  const state: TestUpstream = {
    url: '',
    port,
    hits: new Map(),
    connections: 0,
    stop: async () => {
      const s = server;
      server = null;
      if (!s) return;
      const closed = new Promise<void>((resolve) => s.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
    start: async () => {
      const s = http.createServer(handle);
      const wss = new WebSocketServer({ noServer: true });
      s.on('upgrade', (req, socket, head) => {
        if (req.url !== '/ws') {
          socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nno socket');
          return;
        }
        wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (data, binary) => ws.send(binary ? data : `echo:${String(data)}`)));
      });
      s.on('connection', (socket: Socket) => {
        state.connections++;
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
      });
      await new Promise<void>((resolve) => s.listen(state.port, '127.0.0.1', () => resolve()));
      state.port = (s.address() as AddressInfo).port;
      state.url = `http://127.0.0.1:${state.port}`;
      server = s;
    },
  };

  function handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    state.hits.set(url.pathname, (state.hits.get(url.pathname) ?? 0) + 1);
    switch (url.pathname) {
      case '/echo':
        res.setHeader('set-cookie', ['a=1', 'b=2']);
        res.setHeader('x-upstream', 'yes');
        res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers }));
        return;
      case '/hash': {
        // Hashes the request body as it streams in.
        const hash = createHash('sha256');
        let size = 0;
        req.on('data', (d: Buffer) => {
          size += d.length;
          hash.update(d);
        });
        req.on('end', () => res.end(JSON.stringify({ size, sha256: hash.digest('hex') })));
        return;
      }
      case '/slow':
        setTimeout(() => res.end('slow done'), Number(url.searchParams.get('ms') ?? 500));
        return;
      case '/stream': {
        // Writes a chunk, then waits for /stream-next before finishing: proves the gateway doesn't buffer.
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first\n');
        setTimeout(() => res.end('last\n'), Number(url.searchParams.get('ms') ?? 800));
        return;
      }
      case '/big': {
        const total = Number(url.searchParams.get('bytes') ?? 1 << 20);
        const block = Buffer.alloc(64 * 1024, 'x');
        let sent = 0;
        const pump = () => {
          while (sent < total) {
            const n = Math.min(block.length, total - sent);
            sent += n;
            if (!res.write(block.subarray(0, n))) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
        return;
      }
      default:
        res.writeHead(404).end('not found');
    }
  }

  await state.start();
  return state;
}
