import { readFileSync } from 'node:fs';

/** USER_HZ, the unit of /proc/PID/stat's times: 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100;
const MIB = 1024 * 1024;

/** CPU time (user + system) a process has used so far, in ms, from /proc; NaN without /proc. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces; the fields after it start at 3 (state).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime: fields 14 and 15
    return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return Number.NaN;
  }
}

export interface Rss {
  /** Resident set size now (VmRSS), MiB. */
  readonly rssMiB: number;
  /** The process's peak resident set size so far (VmHWM, the high-water mark), MiB. */
  readonly hwmMiB: number;
}

/** RSS and its high-water mark from /proc/PID/status; NaN without /proc. */
export function rss(pid: number): Rss {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
    return { rssMiB: kib('VmRSS') / 1024, hwmMiB: kib('VmHWM') / 1024 };
  } catch {
    return { rssMiB: Number.NaN, hwmMiB: Number.NaN };
  }
}

/** Bytes as MiB. */
export function mib(bytes: number): number {
  return bytes / MIB;
}

/**
 * Samples a process's RSS every `intervalMs` until stopped and keeps the largest, for the peak
 * of one phase (VmHWM covers the whole life of the process, start-up included).
 */
export class RssSampler {
  readonly #pid: number;
  readonly #timer: NodeJS.Timeout;
  #peakMiB = 0;

  constructor(pid: number, intervalMs = 250) {
    this.#pid = pid;
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), intervalMs);
  }

  #sample(): void {
    const now = rss(this.#pid).rssMiB;
    if (now > this.#peakMiB) this.#peakMiB = now;
  }

  /** Stops sampling, after one last sample, and returns the peak in MiB. */
  stop(): number {
    clearInterval(this.#timer);
    this.#sample();
    return this.#peakMiB;
  }
}
