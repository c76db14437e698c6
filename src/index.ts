// Public surface of the agentrun-operator package, for building your own operator binary.
export { OPERATOR_NAME, OPERATOR_VERSION } from './version.ts';
