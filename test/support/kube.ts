import { randomBytes } from 'node:crypto';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { statusCodeOf } from '../../src/kube/kube-errors.ts';

/**
 * Creates a uniquely named namespace. There is no namespace controller in the test control
 * plane, so deleted namespaces never finish terminating: every test takes a new one.
 */
export async function createNamespace(kc: KubeConfig, prefix: string): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
  return name;
}

/** The HTTP status of a failed API call, or rethrows anything that is not an API error. */
export async function statusOf(call: Promise<unknown>): Promise<number> {
  try {
    await call;
    return 200;
  } catch (error) {
    const code = statusCodeOf(error);
    if (code !== undefined) return code;
    throw error;
  }
}
