import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { freePort } from '../ports.ts';
import { ManagedProcess, startOrphanWatchdog } from '../process.ts';
import { waitFor } from '../wait.ts';
import { type ControlPlaneBinaries, findBinaries } from './assets.ts';
import { createCa, createLeaf, createServiceAccountKeys, type KeyPair, readPem } from './certs.ts';
import { type ControllerManagerOptions, startControllerManager } from './controller-manager.ts';
import { type ClusterAccess, kubeConfigFor, writeKubeconfig } from './kubeconfig.ts';

/** Everything a test process needs to reach the control plane; plain data, safe to serialise. */
export interface ControlPlaneInfo extends ClusterAccess {
  /** Working directory: certificates, logs, etcd data, kubeconfigs. Removed on stop. */
  readonly dir: string;
  /** kubeconfig of a `system:masters` user (bypasses RBAC), for kubectl and set-up code. */
  readonly adminKubeconfig: string;
  /** The client CA that the API server trusts; its key mints further users. */
  readonly clientCa: KeyPair;
  /** A kubectl of the API server's release. */
  readonly kubectl: string;
  /** etcd's client URL (plain http on loopback), for tests that act on etcd itself. */
  readonly etcdUrl: string;
}

export interface ControlPlaneOptions {
  readonly binaries?: ControlPlaneBinaries;
  /** Extra kube-apiserver flags, e.g. `--runtime-config=...`. */
  readonly apiserverArgs?: readonly string[];
  /** Parent of the working directory; default the OS temp dir. */
  readonly baseDir?: string;
  readonly startTimeoutMs?: number;
  /**
   * Runs kube-controller-manager too (default off): `true` for the controllers Jobs need
   * (CONTROLLER_MANAGER_CONTROLLERS), or a list and extra flags of your own. With it, the
   * ServiceAccount admission plugin is on, as in a cluster; without it, pods could not be
   * created, as no controller would make the `default` ServiceAccount they are admitted with.
   * Nothing plays the kubelet: see test/support/kubelet.ts.
   */
  readonly controllerManager?: boolean | ControllerManagerOptions;
}

/**
 * A real etcd + kube-apiserver on loopback ports, as controller-runtime's envtest runs them:
 * RBAC authorization, client-certificate authentication and service-account token signing (so
 * the TokenRequest API works); no scheduler or kubelet, and no controllers unless
 * `controllerManager` asks for kube-controller-manager.
 */
export class ControlPlane {
  readonly info: ControlPlaneInfo;
  /** etcd, then kube-apiserver (last: stopApiserver and startApiserver act on it). */
  private readonly processes: ManagedProcess[];
  private readonly controllerManager: ManagedProcess | undefined;
  private readonly cancelWatchdog: () => void;

  private constructor(
    info: ControlPlaneInfo,
    processes: ManagedProcess[],
    controllerManager: ManagedProcess | undefined,
    cancel: () => void,
  ) {
    this.info = info;
    this.processes = processes;
    this.controllerManager = controllerManager;
    this.cancelWatchdog = cancel;
  }

  static async start(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
    const binaries = options.binaries ?? findBinaries();
    const timeoutMs = options.startTimeoutMs ?? 60_000;
    const dir = mkdtempSync(join(options.baseDir ?? tmpdir(), 'agentrun-envtest-'));
    const processes: ManagedProcess[] = [];
    let controllerManager: ManagedProcess | undefined;
    const cancelWatchdog = startOrphanWatchdog(dir);
    try {
      const pki = join(dir, 'pki');
      mkdirSync(pki, { mode: 0o700 });
      const servingCa = createCa(pki, 'serving-ca');
      const serving = createLeaf(pki, 'apiserver', servingCa, {
        commonName: 'kube-apiserver',
        usage: 'server',
        altNames: ['DNS:localhost', 'IP:127.0.0.1'],
      });
      const clientCa = createCa(pki, 'client-ca');
      const admin = createLeaf(pki, 'admin', clientCa, {
        commonName: 'envtest-admin',
        organizations: ['system:masters'],
        usage: 'client',
      });
      const sa = createServiceAccountKeys(pki);

      const [etcdPort, peerPort, apiPort] = await distinctPorts(3);
      const etcdUrl = `http://127.0.0.1:${etcdPort}`;
      const peerUrl = `http://127.0.0.1:${peerPort}`;
      const etcd = ManagedProcess.start({
        name: 'etcd',
        command: binaries.etcd,
        args: [
          `--data-dir=${join(dir, 'etcd')}`,
          `--listen-client-urls=${etcdUrl}`,
          `--advertise-client-urls=${etcdUrl}`,
          `--listen-peer-urls=${peerUrl}`,
          `--initial-advertise-peer-urls=${peerUrl}`,
          `--initial-cluster=default=${peerUrl}`,
          '--unsafe-no-fsync=true',
          '--log-level=warn',
        ],
        logFile: join(dir, 'etcd.log'),
      });
      processes.push(etcd);

      const server = `https://127.0.0.1:${apiPort}`;
      const apiserverOptions = {
        name: 'kube-apiserver',
        command: binaries.kubeApiserver,
        args: [
          `--etcd-servers=${etcdUrl}`,
          '--bind-address=127.0.0.1',
          '--advertise-address=127.0.0.1',
          `--secure-port=${apiPort}`,
          `--cert-dir=${pki}`,
          `--tls-cert-file=${serving.certFile}`,
          `--tls-private-key-file=${serving.keyFile}`,
          `--client-ca-file=${clientCa.certFile}`,
          '--authorization-mode=RBAC',
          '--allow-privileged=true',
          // Without kube-controller-manager nothing makes the `default` ServiceAccount that the
          // plugin requires of every pod.
          ...(options.controllerManager ? [] : ['--disable-admission-plugins=ServiceAccount']),
          '--service-cluster-ip-range=10.0.0.0/24',
          `--service-account-issuer=${server}`,
          `--service-account-key-file=${sa.publicKeyFile}`,
          `--service-account-signing-key-file=${sa.privateKeyFile}`,
          '--endpoint-reconciler-type=none',
          ...(options.apiserverArgs ?? []),
        ],
        logFile: join(dir, 'kube-apiserver.log'),
      };
      const apiserver = ManagedProcess.start(apiserverOptions);
      processes.push(apiserver);

      await waitFor(
        `etcd on ${etcdUrl}`,
        async () => {
          etcd.assertRunning();
          const res = await fetch(`${etcdUrl}/health`);
          return res.ok ? true : undefined;
        },
        { timeoutMs },
      );
      const caData = readPem(servingCa.certFile);
      await waitFor(
        `kube-apiserver /readyz on ${server}`,
        async () => {
          apiserver.assertRunning();
          const status = await httpsStatus(`${server}/readyz`, caData);
          if (status === 200) return true;
          throw new Error(`/readyz answered ${status}`);
        },
        { timeoutMs },
      );

      const adminKubeconfig = join(dir, 'admin.kubeconfig');
      const credentials = {
        kind: 'certificate',
        certData: readPem(admin.certFile),
        keyData: readPem(admin.keyFile),
      } as const;
      writeKubeconfig(adminKubeconfig, { server, caData }, 'envtest-admin', credentials);
      // /readyz can pass a moment before the bootstrap namespaces exist.
      const core = kubeConfigFor({ server, caData }, 'envtest-admin', credentials).makeApiClient(
        CoreV1Api,
      );
      await waitFor('namespace default', () => core.readNamespace({ name: 'default' }), {
        timeoutMs,
      });

      if (options.controllerManager) {
        controllerManager = await startControllerManager({
          binary: binaries.kubeControllerManager,
          dir,
          pki,
          server,
          servingCa,
          clientCa,
          options: options.controllerManager === true ? {} : options.controllerManager,
          timeoutMs,
        });
      }

      const plane = new ControlPlane(
        { dir, server, caData, adminKubeconfig, clientCa, kubectl: binaries.kubectl, etcdUrl },
        processes,
        controllerManager,
        cancelWatchdog,
      );
      plane.#restartApiserver = async (n: number) => {
        const next = ManagedProcess.start({
          ...apiserverOptions,
          logFile: join(dir, `kube-apiserver-${n}.log`),
        });
        processes[processes.length - 1] = next;
        await waitFor(
          `kube-apiserver /readyz on ${server} again`,
          async () => {
            next.assertRunning();
            const status = await httpsStatus(`${server}/readyz`, caData);
            if (status === 200) return true;
            throw new Error(`/readyz answered ${status}`);
          },
          { timeoutMs, intervalMs: 50 },
        );
      };
      return plane;
    } catch (error) {
      await controllerManager?.stop();
      await stopAll(processes);
      cancelWatchdog();
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
  }

  #restartApiserver: ((n: number) => Promise<void>) | undefined;
  #apiserverStarts = 1;

  /** Stops kube-apiserver alone (SIGTERM); etcd keeps its data. `startApiserver()` undoes it. */
  async stopApiserver(): Promise<void> {
    await this.processes.at(-1)?.stop();
  }

  /**
   * Starts kube-apiserver again with the same flags, port, certificates and etcd (so clients
   * reconnect with what they have), and waits for its /readyz.
   */
  async startApiserver(): Promise<void> {
    this.#apiserverStarts += 1;
    await this.#restartApiserver?.(this.#apiserverStarts);
  }

  /**
   * Stops kube-controller-manager (if running), kube-apiserver, then etcd, and removes the
   * working directory. Idempotent.
   */
  async stop(): Promise<void> {
    await this.controllerManager?.stop();
    await stopAll(this.processes);
    this.cancelWatchdog();
    rmSync(this.info.dir, { recursive: true, force: true });
  }
}

async function stopAll(processes: ManagedProcess[]): Promise<void> {
  // Reverse start order: the API server first, so it does not log etcd errors while stopping.
  for (const p of [...processes].reverse()) await p.stop();
}

async function distinctPorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

function httpsStatus(url: string, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}
