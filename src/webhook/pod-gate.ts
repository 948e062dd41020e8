// The mutation: add the entitlement scheduling gate to a labelled pod at CREATE, and remove the
// annotations only the operator writes that a new pod brings along (a pod created with
// `status: Entitled` must not pass for a registered one). The same as the policy admission
// mode's MutatingAdmissionPolicy (config/admission-policy). Pure, so it is easy to reason about.
// The registration's nonce needs nothing from admission: the operator computes it (verdicts/nonce.ts).
import { annotations, group, productLabel, schedulingGate } from '../api/marketplace-product.js';
import { isGated } from '../api/pod-state.js';

export interface AdmissionRequest {
  uid: string;
  operation?: string;
  namespace?: string;
  name?: string;
  object?: { metadata?: { name?: string; generateName?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; spec?: { schedulingGates?: { name: string }[] } };
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  patch?: string;
  status?: { code: number; message: string };
}

export type JsonPatch = ({ op: 'add'; path: string; value: unknown } | { op: 'remove'; path: string })[];

/** Annotations of ours a new pod may carry: a user's request for a check. */
const userAnnotations: ReadonlySet<string> = new Set([annotations.recheck]);

/**
 * The JSON Patch that gates the pod and removes the operator's annotations it brought (all but a
 * user's `recheck`), or undefined when there is nothing to do: not a labelled pod's CREATE, or a
 * pod of a namespace the operator leaves alone (its namespaceSelector may name another one than
 * the operator's own, when the bundle was installed elsewhere and its selector not edited).
 */
export function gatePatch(request: AdmissionRequest, exempt: ReadonlySet<string>): JsonPatch | undefined {
  const pod = request.object;
  if (request.operation !== undefined && request.operation !== 'CREATE') return undefined;
  if (!pod?.metadata?.labels?.[productLabel]) return undefined;
  if (request.namespace !== undefined && exempt.has(request.namespace)) return undefined;
  const forged: JsonPatch = Object.keys(pod.metadata.annotations ?? {})
    .filter((key) => key.startsWith(`${group}/`) && !userAnnotations.has(key))
    .map((key) => ({ op: 'remove', path: `/metadata/annotations/${pointerEscape(key)}` }));
  const gates = pod.spec?.schedulingGates;
  const gate: JsonPatch = isGated(pod)
    ? []
    : [gates ? { op: 'add', path: '/spec/schedulingGates/-', value: { name: schedulingGate } } : { op: 'add', path: '/spec/schedulingGates', value: [{ name: schedulingGate }] }];
  const patch = [...gate, ...forged];
  return patch.length > 0 ? patch : undefined;
}

/** A JSON Pointer token (RFC 6901): ~ and / escaped. */
function pointerEscape(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function admit(request: AdmissionRequest, exempt: ReadonlySet<string>): AdmissionResponse {
  const patch = gatePatch(request, exempt);
  if (!patch) return { uid: request.uid, allowed: true };
  return { uid: request.uid, allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') };
}

/** Checks the shape of an AdmissionReview; returns the request or a reason it is unusable. */
export function parseAdmissionReview(body: unknown): AdmissionRequest | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'body is not a JSON object';
  const review = body as { apiVersion?: unknown; kind?: unknown; request?: unknown };
  if (review.apiVersion !== 'admission.k8s.io/v1' || review.kind !== 'AdmissionReview') return 'body is not an admission.k8s.io/v1 AdmissionReview';
  const request: unknown = review.request;
  if (typeof request !== 'object' || request === null) return 'AdmissionReview has no request';
  const { uid, object } = request as { uid?: unknown; object?: unknown };
  if (typeof uid !== 'string' || uid === '') return 'AdmissionReview has no request.uid';
  if (object === undefined) return request as AdmissionRequest;
  if (!isRecord(object)) return 'request.object is not an object';
  return objectShapeError(object) ?? (request as AdmissionRequest);
}

/** What of the pod the gate reads, checked: metadata, its labels and annotations, spec.schedulingGates. */
function objectShapeError(object: Record<string, unknown>): string | undefined {
  const { metadata, spec } = object;
  if (metadata !== undefined && !isRecord(metadata)) return 'request.object.metadata is not an object';
  for (const field of ['labels', 'annotations'] as const) {
    const map = metadata?.[field];
    if (map !== undefined && (!isRecord(map) || !Object.values(map).every((value) => typeof value === 'string'))) return `request.object.metadata.${field} is not a map of strings`;
  }
  if (spec !== undefined && !isRecord(spec)) return 'request.object.spec is not an object';
  const gates = spec?.schedulingGates;
  if (gates !== undefined && (!Array.isArray(gates) || !gates.every((gate) => isRecord(gate) && typeof gate.name === 'string'))) return 'request.object.spec.schedulingGates is not a list of {name}';
  return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
