/**
 * Agreement policies. The decision rules themselves live in protocol/policy.ts: a certificate verifier
 * must recompute decisions, and DESIGN.md lets `certificate` use only `protocol`, so the rules are part
 * of the protocol (like the codec). This part is where agreement-level logic beyond them belongs.
 */
export { decide, PolicyError, topLabel, validatePolicy } from '../protocol/policy.ts';
