/**
 * One node's Prometheus metrics, in a registry of its own (several nodes can share a process, as in tests).
 * Counters and histograms are fed by the NodeHost observer hooks (`observer()`, passed as HostOptions.observe)
 * and by the HTTP API; gauges are read from the host, its backend and the transport when scraped (`attach`).
 *
 *   dropbear_requests_accepted_total                 requests this node accepted from clients
 *   dropbear_requests_rejected_total{reason}         client requests refused, by error code (a submitting call refused
 *                                                    whole counts once; a request resent while held or once executed
 *                                                    is answered like the first copy: neither accepted nor refused)
 *   dropbear_certificates_total                      certificates formed at this node
 *   dropbear_inference_queue_depth                   inputs waiting in the backend (queued + preprocessing)
 *   dropbear_inference_in_flight                     backend batches or calls under way
 *   dropbear_inference_batch_size                    requests per inference call of the host (histogram)
 *   dropbear_inference_seconds                       time per inference call of the host (histogram)
 *   dropbear_inference_failures_total                inputs the model failed on (voted as empty results)
 *   dropbear_inference_skipped_total                 inputs dropped unrun: their request was proposed or executed meanwhile
 *   dropbear_consensus_batch_size                    requests per executed consensus batch (histogram)
 *   dropbear_accept_to_certificate_seconds           accepted here to certificate formed here (histogram)
 *   dropbear_ledger_sync_seconds                     one fsync of the ledger's WAL, the thread pool's queue included (histogram)
 *   dropbear_pending_requests                        requests held by the replica, not yet executed
 *   dropbear_view / dropbear_last_executed_seq       the replica's view and last executed sequence number
 *   dropbear_catching_up / dropbear_behind_batches   1 while fetching executed batches from peers; batches the group
 *                                                    is known to have executed beyond this node (/v1/status behindBy)
 *   dropbear_view_changes_total                      view changes seen by this node
 *   dropbear_owner_earned{node} / dropbear_node_fee{node}  fees each node's owner earned, and each node's fee now, in the
 *                                                    ledger as of the last executed batch (GET /v1/owners)
 *   dropbear_owner_withdrawn{node}                   money each node's owner withdrew, in the same ledger (its payable is
 *                                                    earned less this)
 *   dropbear_money_refunded                          money clients' refunds took back out of the group, in the same ledger
 *   dropbear_peer_connected{peer}                    1 when the transport reports the peer connected
 *   dropbear_peer_quarantined_seconds{peer}          what is left of the peer's quarantine (0: none; transport.ts)
 *   dropbear_bad_frames_total{peer}                  frames a peer sent that could not be used, by peer, as the transport counts them: undecodable
 *                                                    or a bad signature, its own or relayed (each closes its connection and quarantines it), and
 *                                                    oversized, empty or cut-short frames after the handshake (each closes its connection)
 *   dropbear_peer_messages_sent_total{kind}          peer messages handed to the transport, by kind (a broadcast counts once per peer)
 *   dropbear_peer_bytes_sent_total{kind}             their encoded bytes (frame headers and TCP not counted)
 *   dropbear_inference_failed_workers                model threads that gave up starting (WORKER_START_FAILED; /readyz then 503)
 *   dropbear_http_responses_total{method,route,status}  (routes not found: route="unmatched")
 *   dropbear_http_requests_aborted_total{method,route}  calls whose client closed the connection before the answer (none in the above)
 *   dropbear_tls_certificate_expires_in_seconds      until this node's own TLS certificate expires (negative once it has;
 *                                                    only with TLS, certificateExpiry; transport.ts warns at 14 days and 1 day)
 *   dropbear_process_*, dropbear_nodejs_*            with MetricsOptions.processMetrics (the node process sets it)
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { type Certificate, hex } from '../protocol/index.ts';
import type { HostObserver, NodeHost } from './host.ts';
import type { Transport } from './transport.ts';

/** A peer connection as the transport reports it; `state === 'connected'` counts as connected. */
export interface PeerState {
  id: number;
  state: string;
  /** What is left of the peer's quarantine (transport.ts: a bad frame or a bad signature), ms; 0 or absent: none. */
  quarantinedMs?: number;
  /** Times the peer was quarantined since this node started. */
  quarantines?: number;
  /** Frames from the peer that could not be used since this node started (transport.ts, PeerStats.badFrames). */
  badFrames?: number;
}

/** The transport's peers as the API's status and the metrics show them. */
export function peerStatesOf(transport: Pick<Transport, 'stats'>): PeerState[] {
  return transport.stats().peers.map((p) => ({
    id: p.id,
    state: p.state,
    quarantinedMs: p.quarantinedMs,
    quarantines: p.quarantines,
    badFrames: p.badFrames,
  }));
}

export interface MetricsOptions {
  /** Also export the process metrics of prom-client (CPU, memory, event loop lag, GC), prefixed dropbear_. */
  processMetrics?: boolean;
}

export function isConnected(p: PeerState): boolean {
  return p.state === 'connected';
}

export class NodeMetrics {
  readonly registry = new Registry();
  private host: NodeHost | null = null;
  private peers: (() => PeerState[]) | null = null;

  private readonly accepted: Counter;
  private readonly rejected: Counter<'reason'>;
  private readonly certificates: Counter;
  private readonly inferBatch: Histogram;
  private readonly inferSeconds: Histogram;
  private readonly inferFailures: Counter;
  private readonly inferSkipped: Counter;
  private readonly consensusBatch: Histogram;
  private readonly acceptToCert: Histogram;
  private readonly ledgerSync: Histogram;
  private readonly viewChanges: Counter;
  private readonly peerMessages: Counter<'kind'>;
  private readonly peerBytes: Counter<'kind'>;
  private readonly http: Counter<'method' | 'route' | 'status'>;
  private readonly httpAbortedCount: Counter<'method' | 'route'>;

  constructor(opts: MetricsOptions = {}) {
    const registers = [this.registry];
    const self = this;
    this.accepted = new Counter({
      name: 'dropbear_requests_accepted_total',
      help: 'Client requests accepted by this node',
      registers,
    });
    this.rejected = new Counter({
      name: 'dropbear_requests_rejected_total',
      help: 'Client requests refused by this node, by error code',
      labelNames: ['reason'],
      registers,
    });
    this.certificates = new Counter({
      name: 'dropbear_certificates_total',
      help: 'Certificates formed at this node',
      registers,
    });
    this.ledgerSync = new Histogram({
      name: 'dropbear_ledger_sync_seconds',
      help: "One fsync of the ledger's WAL started by the node host, from the call to its callback (the thread pool's queue included)",
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1],
      registers,
    });
    new Gauge({
      name: 'dropbear_inference_queue_depth',
      help: 'Inputs waiting in the model backend (queued for a batch or being preprocessed)',
      registers,
      collect() {
        const s = self.backendStats();
        this.set(s ? (num(s.queued) ?? 0) + (num(s.preprocessing) ?? 0) : 0);
      },
    });
    new Gauge({
      name: 'dropbear_inference_failed_workers',
      help: 'Model threads that gave up starting (WORKER_START_FAILED): their calls fail, with all failed the node votes empty answers',
      registers,
      collect() {
        this.set(num(self.backendStats()?.failedWorkers) ?? 0);
      },
    });
    new Gauge({
      name: 'dropbear_inference_in_flight',
      help: 'Batches or calls under way in the model backend',
      registers,
      collect() {
        this.set(num(self.backendStats()?.inFlight) ?? 0);
      },
    });
    this.inferBatch = new Histogram({
      name: 'dropbear_inference_batch_size',
      help: 'Requests per inference call of the host',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
      registers,
    });
    this.inferSeconds = new Histogram({
      name: 'dropbear_inference_seconds',
      help: 'Wall time of one inference call of the host (all its requests)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.inferFailures = new Counter({
      name: 'dropbear_inference_failures_total',
      help: 'Inputs the model could not classify (voted as an empty result)',
      registers,
    });
    this.inferSkipped = new Counter({
      name: 'dropbear_inference_skipped_total',
      help: 'Inputs dropped before decoding or their model batch: their request was proposed or executed while they waited',
      registers,
    });
    this.consensusBatch = new Histogram({
      name: 'dropbear_consensus_batch_size',
      help: 'Requests per executed consensus batch',
      buckets: [0, 1, 4, 16, 64, 256, 1024, 4096, 16384, 65536],
      registers,
    });
    this.acceptToCert = new Histogram({
      name: 'dropbear_accept_to_certificate_seconds',
      help: 'From a request accepted at this node to its certificate formed at this node',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    new Gauge({
      name: 'dropbear_pending_requests',
      help: 'Requests held by the replica and not yet executed',
      registers,
      collect() {
        if (self.host) this.set(self.host.replica.pendingRequests);
      },
    });
    new Gauge({
      name: 'dropbear_view',
      help: 'Current PBFT view',
      registers,
      collect() {
        if (self.host) this.set(self.host.replica.view);
      },
    });
    new Gauge({
      name: 'dropbear_last_executed_seq',
      help: 'Sequence number of the last executed consensus batch',
      registers,
      collect() {
        if (self.host) this.set(self.host.replica.lastExecuted);
      },
    });
    new Gauge({
      name: 'dropbear_catching_up',
      help: 'Whether this node is fetching executed batches from its peers (state transfer): 1 yes, 0 no',
      registers,
      collect() {
        if (self.host) this.set(self.host.replica.catchingUp ? 1 : 0);
      },
    });
    new Gauge({
      name: 'dropbear_behind_batches',
      help: "Batches the group is known to have executed beyond this node's last (f+1 peers' receipts or checkpoints)",
      registers,
      collect() {
        if (self.host)
          this.set(Math.max(0, self.host.replica.peersExecuted - self.host.replica.lastExecuted));
      },
    });
    // Per node, from the ledger as of its last executed batch (GET /v1/owners has the same figures).
    const perNode: [
      string,
      string,
      (st: NonNullable<typeof self.host>['db']['state']) => readonly number[],
    ][] = [
      [
        'dropbear_owner_earned',
        "Fees each node's owner earned, in this node's ledger as of its last executed batch",
        (st) => st.stats.map((x) => x.earned),
      ],
      [
        'dropbear_owner_withdrawn',
        "Money each node's owner withdrew (what it may still withdraw is earned less this), in this node's ledger as of its last executed batch",
        (st) => st.withdrawn,
      ],
      [
        'dropbear_node_fee',
        "Each node's per-request fee now (the genesis's until an owner's fee change is ordered)",
        (st) => st.fees,
      ],
    ];
    for (const [name, help, of] of perNode)
      new Gauge({
        name,
        help,
        labelNames: ['node'],
        registers,
        collect() {
          const st = self.host?.db.state;
          if (st) for (const [node, v] of of(st).entries()) this.set({ node: String(node) }, v);
        },
      });
    new Gauge({
      name: 'dropbear_money_refunded',
      help: "Money clients' refunds took back out of the group, all together, in this node's ledger as of its last executed batch",
      registers,
      collect() {
        const st = self.host?.db.state;
        if (st) this.set(st.refunded);
      },
    });
    this.viewChanges = new Counter({
      name: 'dropbear_view_changes_total',
      help: 'View changes seen by this node',
      registers,
    });
    new Gauge({
      name: 'dropbear_peer_connected',
      help: 'Connection to each peer: 1 connected, 0 not',
      labelNames: ['peer'],
      registers,
      collect() {
        this.reset();
        for (const p of self.peers?.() ?? []) this.set({ peer: String(p.id) }, isConnected(p) ? 1 : 0);
      },
    });
    new Gauge({
      name: 'dropbear_peer_quarantined_seconds',
      help: "What is left of each peer's quarantine in seconds (0: none): a peer that sent an undecodable frame or a bad signature is kept out for a while",
      labelNames: ['peer'],
      registers,
      collect() {
        this.reset();
        for (const p of self.peers?.() ?? []) this.set({ peer: String(p.id) }, (p.quarantinedMs ?? 0) / 1000);
      },
    });
    // Read from the transport when scraped: it counts every such frame, those its host reports (undecodable,
    // a bad signature) and its own (oversized, empty, cut short). Until 2026-12-07 this counted only the
    // host's reports: a peer sending oversized frames showed none.
    new Counter({
      name: 'dropbear_bad_frames_total',
      help: 'Frames a peer sent that could not be used (undecodable, a bad signature of its own or relayed, oversized, empty or cut short; each closes the connection, the first two also quarantine the peer), by peer',
      labelNames: ['peer'],
      registers,
      collect() {
        this.reset();
        for (const p of self.peers?.() ?? []) this.inc({ peer: String(p.id) }, p.badFrames ?? 0);
      },
    });
    this.peerMessages = new Counter({
      name: 'dropbear_peer_messages_sent_total',
      help: 'Peer messages handed to the transport, by message kind (a broadcast counts once per peer)',
      labelNames: ['kind'],
      registers,
    });
    this.peerBytes = new Counter({
      name: 'dropbear_peer_bytes_sent_total',
      help: 'Encoded bytes of the peer messages handed to the transport, by message kind (frame headers not counted)',
      labelNames: ['kind'],
      registers,
    });
    this.http = new Counter({
      name: 'dropbear_http_responses_total',
      help: 'HTTP responses by method, route and status',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.httpAbortedCount = new Counter({
      name: 'dropbear_http_requests_aborted_total',
      help: 'HTTP calls whose client closed the connection before the answer was sent (not in dropbear_http_responses_total), by method and route',
      labelNames: ['method', 'route'],
      registers,
    });
    if (opts.processMetrics) {
      collectDefaultMetrics({ register: this.registry, prefix: 'dropbear_' });
      eventLoopDelayStats(this.registry);
    }
  }

  /** The gauges read this host (and, when given, the transport's peer states) at scrape time. */
  attach(host: NodeHost | null, peers?: () => PeerState[]): void {
    this.host = host;
    if (peers) this.peers = peers;
  }

  /**
   * Under TLS: dropbear_tls_certificate_expires_in_seconds, read from `msLeft` (Transport.certExpiresInMs) when
   * scraped. Not called without TLS, so that a node without a certificate exports no such gauge.
   */
  certificateExpiry(msLeft: () => number | null): void {
    new Gauge({
      name: 'dropbear_tls_certificate_expires_in_seconds',
      help: "Seconds until this node's own TLS certificate expires (negative once it has: peers with a CA then refuse new connections from it)",
      registers: [this.registry],
      collect() {
        const ms = msLeft();
        if (ms !== null) this.set(ms / 1000);
      },
    });
  }

  /** The hooks to pass as HostOptions.observe. */
  observer(): HostObserver {
    return {
      accepted: () => this.accepted.inc(),
      rejected: (code) => this.rejected.inc({ reason: code }),
      inferred: (n, ms, failed, skipped) => {
        if (n > 0) {
          this.inferBatch.observe(n);
          this.inferSeconds.observe(ms / 1000);
        }
        if (failed > 0) this.inferFailures.inc(failed);
        if (skipped > 0) this.inferSkipped.inc(skipped);
      },
      executed: (_seq, requests) => this.consensusBatch.observe(requests),
      walSynced: (ms) => this.ledgerSync.observe(ms / 1000),
      certified: (certs) => this.onCertified(certs),
      viewChange: () => this.viewChanges.inc(),
      sent: (kind, messages, bytes) => {
        this.peerMessages.inc({ kind }, messages);
        this.peerBytes.inc({ kind }, bytes);
      },
    };
  }

  /** A client request the API refused before it reached the replica (the replica's refusals come through the observer). */
  requestRejected(reason: string): void {
    this.rejected.inc({ reason });
  }

  /** A call whose client left before its answer (fastify's onRequestAbort). */
  httpAborted(method: string, route: string): void {
    this.httpAbortedCount.inc({ method, route });
  }

  httpResponse(method: string, route: string, status: number): void {
    this.http.inc({ method, route, status: String(status) });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  private backendStats(): Record<string, unknown> | null {
    if (!this.host) return null;
    try {
      return this.host.currentBackend.stats() as unknown as Record<string, unknown>;
    } catch {
      return null; // the ordered model is not loaded
    }
  }

  private onCertified(certs: Certificate[]): void {
    this.certificates.inc(certs.length);
    const host = this.host;
    if (!host) return;
    // Monotonic, as host.acceptedAt is: on the wall clock a step back (NTP) gave negative durations.
    const now = performance.now();
    for (const c of certs) {
      const id = hex(c.outcome.requestId);
      const at = host.acceptedAt.get(id);
      if (at === undefined) continue; // accepted at another node
      this.acceptToCert.observe((now - at) / 1000);
      host.acceptedAt.delete(id);
    }
    // A request accepted here and never certified here (skipped for its fee, certified while this node was
    // behind) is forgotten by the host once past the expiry window (NodeHost.rememberAccepted).
  }
}

/**
 * The event loop delay's statistics (dropbear_nodejs_eventloop_lag_{min,max,mean,stddev,p50,p90,p99}_seconds)
 * in place of prom-client's. Those are of the delays since the previous scrape, and a scrape that found none
 * recorded since (two scrapers, or one scrape soon after another: under the 10 ms resolution) read an empty
 * histogram: mean and stddev NaN, written `Nan` (not the format's `NaN`), min 9223372036854.776 s, max and
 * percentiles 0 (2026-12-06). Here such a scrape shows the last window that recorded any.
 */
function eventLoopDelayStats(registry: Registry): void {
  const h = monitorEventLoopDelay();
  h.enable();
  const stats: [string, string, () => number][] = [
    ['min', 'The minimum', () => h.min],
    ['max', 'The maximum', () => h.max],
    ['mean', 'The mean', () => h.mean],
    ['stddev', 'The standard deviation', () => h.stddev],
    ['p50', 'The 50th percentile', () => h.percentile(50)],
    ['p90', 'The 90th percentile', () => h.percentile(90)],
    ['p99', 'The 99th percentile', () => h.percentile(99)],
  ];
  const gauges = stats.map(([key, what], i) => {
    const name = `dropbear_nodejs_eventloop_lag_${key}_seconds`;
    registry.removeSingleMetric(name);
    return new Gauge({
      name,
      help: `${what} of the event loop delays recorded since the previous scrape (when none was recorded since, of the last window that recorded any)`,
      registers: [registry],
      // The first gauge's collect (the registry collects in order) sets them all.
      collect:
        i > 0
          ? undefined
          : () => {
              if (h.count === 0) return;
              for (const [j, [, , read]] of stats.entries()) gauges[j].set(read() / 1e9);
              h.reset();
            },
    });
  });
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}
