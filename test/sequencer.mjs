// Runs the chaos test file last. It starts a whole platform (Postgres, a broker, two relays, two
// scorers, the API, the judge) for several minutes and keeps both cores busy; run beside the other
// files it turns their timings into noise. Last, it overlaps at most one other file.
import Sequencer from '@jest/test-sequencer';

const isChaos = (test) => /[\\/]chaos[^\\/]*\.test\.ts$/.test(test.path);

export default class ChaosLastSequencer extends Sequencer {
  sort(tests) {
    const sorted = super.sort(tests);
    return [...sorted.filter((t) => !isChaos(t)), ...sorted.filter(isChaos)];
  }
}
