/** Min-heap of timed events; ties keep insertion order, so a run is fully deterministic. */
import { MinHeap } from '../protocol/heap.ts';

export interface Timed {
  at: number;
  order: number;
  run: () => void;
}

export class EventQueue {
  private readonly h = new MinHeap<Timed>((a, b) => a.at < b.at || (a.at === b.at && a.order < b.order));
  private counter = 0;
  get size(): number {
    return this.h.size;
  }
  push(at: number, run: () => void): void {
    this.h.push({ at, order: this.counter++, run });
  }
  pop(): Timed | undefined {
    return this.h.pop();
  }
}
