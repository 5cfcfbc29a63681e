// What a test file that dies hard (a crash, an unhandled rejection) cannot clean up behind itself, swept by
// `npm test` once the suite has ended: processes it started (PgBouncer, roles), which stay in the suite's
// process group, and the packet-dropping rules of test/helpers/network-cut.ts, tagged with the run's prefix.
// Each sweep says what it removed: a leftover is a test bug worth knowing about.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** The iptables comment that marks a run's network-cut rules: given to the tests as TEST_NETWORK_CUT_TAG. */
export function networkCutTag(prefix) {
  return `recorrencias-test-cut:${prefix}`;
}

/** Kills the processes left in process group `group` (the suite's); returns a description of each. */
export function killProcessGroup(group) {
  const left = [];
  let entries;
  try {
    entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return left; // no /proc: not Linux, nothing to sweep this way
  }
  for (const pid of entries) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so read after the last ')'.
      const [, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(pgrp) !== group) continue;
      left.push(`${pid} ${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))}`);
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // the process ended meanwhile, or is not ours to read
    }
  }
  return left;
}

/** Deletes the network-cut rules tagged for this run; returns them. */
export function removeNetworkCuts(prefix) {
  let rules;
  try {
    rules = execFileSync('iptables', ['-w', '-S', 'INPUT'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch {
    return []; // no iptables here, so no rule either
  }
  const tag = networkCutTag(prefix);
  const removed = [];
  for (const rule of rules.split('\n').filter((line) => line.includes(tag))) {
    // The tag has no spaces: dropping the quotes -S puts around it gives the rule's arguments back.
    const args = rule.replaceAll('"', '').split(' ').slice(2);
    execFileSync('iptables', ['-w', '-D', 'INPUT', ...args]);
    removed.push(rule);
  }
  return removed;
}
