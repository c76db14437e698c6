#!/usr/bin/env node
// The kubectl plugin binary: on PATH as `kubectl-agentrun`, kubectl runs it for
// `kubectl agentrun ...` (see plugins/kubectl-agentrun and docs/cli.md).
import { runMain } from './command.ts';
import { kubectlAgentrun, PLUGIN_PATH } from './history-command.ts';

runMain(PLUGIN_PATH, kubectlAgentrun);
