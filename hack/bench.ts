// `make bench`: what users feel, in one run on this machine. The burst (runs/s against a raw
// replay of the same API writes: E), steady offered rates (create->Running and
// create->Succeeded percentiles from watch events), the operator's CPU per run, its peak and
// idle RSS and V8 heap, and start-up with many finished runs cached. hack/bench/main.ts says how;
// docs/performance.md says how to read it.
import { main } from './bench/main.ts';
import { SettingsError } from './bench/settings.ts';

try {
  process.exitCode = await main();
} catch (error) {
  if (!(error instanceof SettingsError)) throw error;
  console.error(error.message);
  process.exitCode = 2;
}
