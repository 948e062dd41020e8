// The short form of `npm run bench:cluster`: the built operator, as the bundle's Deployment runs
// it (its memory limit enforced by a memory cgroup, its environment), gates and entitles 1,500
// labelled pods without being OOM-killed or exiting, with exactly one registration per pod, in
// either admission mode, and in Pod identity each registration signed for its own pod.
import { managerRuntime, type AdmissionMode } from '../support/bundle.js';
import { cgroupUnavailable, parseBytes } from '../support/cgroup.js';
import { runScale } from '../support/scale.js';

const pods = 1_500;
const unavailable = cgroupUnavailable();
if (unavailable) process.stderr.write(`scale test skipped: ${unavailable}\n`);

const cases: [AdmissionMode, 'Operator' | 'Pod'][] = [
  ['webhook', 'Operator'],
  ['policy', 'Operator'],
  // The mode AWS accepts on EKS: every pod's RegisterUsage signed with its own credentials
  // (a TokenRequest bound to it, exchanged with STS), kept for the pod's hourly reports.
  ['policy', 'Pod'],
];

(unavailable ? describe.skip : describe)('scale under the Deployment memory limit', () => {
  it.each(cases)(`%s mode, %s identity: gates and entitles ${pods} labelled pods inside the limit, with no OOM kill and no restart`, async (admission, identity) => {
    const runtime = managerRuntime();
    const result = await runScale({
      burstPods: 250,
      knownPods: pods,
      totalPods: pods,
      ratePerSecond: 50,
      concurrency: 16,
      awsLatencyMs: 20,
      memoryLimitBytes: parseBytes(runtime.memoryLimit),
      dryRuns: 20,
      identity,
      admission,
      operatorEnv: runtime.env,
      log: () => undefined,
    });
    expect({ survived: result.survived, oomKills: result.memory.oomKills, exitCode: result.exitCode }).toEqual({ survived: true, oomKills: 0, exitCode: undefined });
    expect(result.memory.peakCgroupBytes).toBeLessThan(parseBytes(runtime.memoryLimit));
    expect(result.pods).toMatchObject({ entitled: pods, notEntitled: 0, registrationsOk: pods, distinctNonces: pods, duplicateRegistrations: 0 });
    if (identity === 'Pod') expect(result.pods).toMatchObject({ signedForItsPod: pods, podsSignedFor: pods });
  }, 600_000);
});
