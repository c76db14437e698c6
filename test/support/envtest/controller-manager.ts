import { request } from 'node:https';
import { join } from 'node:path';
import { freePort } from '../ports.ts';
import { ManagedProcess } from '../process.ts';
import { waitFor } from '../wait.ts';
import { createLeaf, type KeyPair, readPem } from './certs.ts';
import { writeKubeconfig } from './kubeconfig.ts';

/** What `ControlPlaneOptions.controllerManager` takes besides `true`. */
export interface ControllerManagerOptions {
  /**
   * The `--controllers` list, by the names of kube-controller-manager 1.36 (`job-controller`,
   * ...; `*` and `-name` work too); default `CONTROLLER_MANAGER_CONTROLLERS`.
   */
  readonly controllers?: readonly string[];
  /** Extra flags, after the harness's own: a single-valued flag given again overrides it. */
  readonly args?: readonly string[];
}

/**
 * The fewest controllers with which Jobs behave as in a cluster once something plays the kubelet
 * (test/support/kubelet.ts): the Job controller makes pods and turns their phases into Job
 * conditions, including activeDeadlineSeconds; the garbage collector deletes what an owner
 * leaves behind (ownerReferences, foreground and background); ttl-after-finished deletes finished
 * Jobs; the service-account controller makes each namespace's `default` ServiceAccount, which the
 * ServiceAccount admission plugin (on whenever this runs) requires of every pod.
 */
export const CONTROLLER_MANAGER_CONTROLLERS: readonly string[] = [
  'job-controller',
  'garbage-collector-controller',
  'ttl-after-finished-controller',
  'serviceaccount-controller',
];

export interface ControllerManagerStart {
  readonly binary: string;
  /** The control plane's working directory; the log goes there beside the others. */
  readonly dir: string;
  /** Where certificates are written. */
  readonly pki: string;
  readonly server: string;
  /** The CA of the API server's serving certificate, which also signs this one's. */
  readonly servingCa: KeyPair;
  readonly clientCa: KeyPair;
  readonly options: ControllerManagerOptions;
  readonly timeoutMs: number;
}

/**
 * Starts kube-controller-manager against the API server and resolves once every requested
 * controller has been built (its health check answers), so a test's first Job is not created
 * before the Job controller watches.
 */
export async function startControllerManager(
  start: ControllerManagerStart,
): Promise<ManagedProcess> {
  const { dir, pki, server, servingCa, clientCa, timeoutMs } = start;
  // One identity for every controller (--use-service-account-credentials=false); system:masters
  // because the garbage collector must list, watch and delete every resource, CRDs included.
  const user = createLeaf(pki, 'kube-controller-manager', clientCa, {
    commonName: 'system:kube-controller-manager',
    organizations: ['system:masters'],
    usage: 'client',
  });
  const serving = createLeaf(pki, 'kube-controller-manager-serving', servingCa, {
    commonName: 'kube-controller-manager',
    usage: 'server',
    altNames: ['DNS:localhost', 'IP:127.0.0.1'],
  });
  const caData = readPem(servingCa.certFile);
  const kubeconfig = join(dir, 'kube-controller-manager.kubeconfig');
  writeKubeconfig(kubeconfig, { server, caData }, 'system:kube-controller-manager', {
    kind: 'certificate',
    certData: readPem(user.certFile),
    keyData: readPem(user.keyFile),
  });
  const controllers = start.options.controllers ?? CONTROLLER_MANAGER_CONTROLLERS;
  const port = await freePort();
  const kcm = ManagedProcess.start({
    name: 'kube-controller-manager',
    command: start.binary,
    args: [
      `--kubeconfig=${kubeconfig}`,
      `--authentication-kubeconfig=${kubeconfig}`,
      `--authorization-kubeconfig=${kubeconfig}`,
      // The API server has no front-proxy CA to look up; without this the log fills with that.
      '--authentication-skip-lookup=true',
      '--bind-address=127.0.0.1',
      `--secure-port=${port}`,
      `--tls-cert-file=${serving.certFile}`,
      `--tls-private-key-file=${serving.keyFile}`,
      '--leader-elect=false',
      '--use-service-account-credentials=false',
      `--controllers=${controllers.join(',')}`,
      // The defaults (20 QPS, 30 burst, 5 Job workers) queue a burst of a few hundred Jobs for
      // minutes: each Job costs a pod create, finalizer removals and status writes.
      '--kube-api-qps=200',
      '--kube-api-burst=400',
      '--concurrent-job-syncs=20',
      '--v=2',
      ...(start.options.args ?? []),
    ],
    logFile: join(dir, 'kube-controller-manager.log'),
  });
  const expected = controllers.filter((c) => c !== '*' && !c.startsWith('-'));
  try {
    await waitFor(
      `kube-controller-manager /healthz on 127.0.0.1:${port} with ${expected.join(', ')}`,
      async () => {
        kcm.assertRunning();
        const { status, body } = await httpsGet(
          `https://127.0.0.1:${port}/healthz?verbose`,
          caData,
        );
        const missing = expected.filter((c) => !hasCheck(body, c));
        if (status === 200 && missing.length === 0) return true;
        throw new Error(`/healthz answered ${status}, without ${missing.join(', ') || 'nothing'}`);
      },
      { timeoutMs },
    );
  } catch (error) {
    await kcm.stop();
    throw error;
  }
  return kcm;
}

/** The verbose /healthz lists `[+]<name> ok` per built controller, under its 1.28+ name. */
function hasCheck(body: string, controller: string): boolean {
  const names = controller.endsWith('-controller')
    ? [controller]
    : [controller, `${controller}-controller`];
  return names.some((name) => body.includes(`[+]${name} ok`));
}

function httpsGet(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, timeout: 2_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}
