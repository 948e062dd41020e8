// A suite over simulated hours: the bundle installed, the operator's ServiceAccount kubeconfig,
// the simulated clock that the operator (SIMULATED_CLOCK) and the fake AWS (its 6-hour window)
// share, and the fake AWS, which takes the control plane's ServiceAccount tokens for STS.
import { readFile } from 'node:fs/promises';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { simulatedClock, type Clock, type SimulatedClockSetting } from '../../src/clock.js';
import { hourMs } from '../../src/controllers/metering/ledger.js';
import { FakeAws } from '../fake-aws/server.js';
import type { ControlPlane } from './control-plane.js';
import { installBundle, serviceAccountKubeconfig } from './operator.js';

export interface SimulatedHours {
  clockSetting: SimulatedClockSetting;
  clock: Clock;
  fake: FakeAws;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  /** The operator's ServiceAccount. */
  kubeconfig: string;
}

/** `rate`: simulated per real time; the clock starts a minute into the hour before `h0`. */
export function simulatedHoursForSuite(controlPlane: () => ControlPlane, h0: number, rate: number): () => SimulatedHours {
  let world: SimulatedHours | undefined;
  beforeAll(async () => {
    const plane = controlPlane();
    await installBundle(plane);
    const kc = plane.kubeConfig();
    const clockSetting = { startMs: h0 - hourMs + 60_000, originMs: Date.now(), rate };
    const clock = simulatedClock(clockSetting);
    const fake = await FakeAws.start({ serviceAccountKeyPems: [await readFile(plane.file('sa.pub'), 'utf8')], clock });
    world = { clockSetting, clock, fake, core: kc.makeApiClient(CoreV1Api), custom: kc.makeApiClient(CustomObjectsApi), kubeconfig: await serviceAccountKubeconfig(plane) };
  }, 120_000);
  afterAll(async () => {
    await world?.fake.close();
  });
  return () => {
    if (!world) throw new Error('the simulated hours did not start');
    return world;
  };
}
