// The mutation: add the entitlement scheduling gate to a labelled pod at CREATE, and the nonce its
// registration will use. The nonce is then stored with the pod before any RegisterUsage (the
// write-ahead the registration needs, without a write of its own). Pure, so it is easy to reason
// about. A pod created with the gate already gets the operator's nonce all the same: a nonce, like
// a verdict, is never the pod's own.
import { annotations, group, productLabel, schedulingGate } from '../api/marketplace-product.js';
import { isGated } from '../api/pod-state.js';
import { newNonce } from '../aws/nonce.js';

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
 * The JSON Patch that gates the pod and gives it `nonce`, or undefined when there is nothing to
 * do (not a labelled pod's CREATE). A nonce the pod brought along is replaced: the operator
 * chooses it. So are verdicts and the other annotations only the operator writes: a pod created
 * with `status: Entitled` must not pass for a registered one.
 */
export function gatePatch(request: AdmissionRequest, nonce: string): JsonPatch | undefined {
  const pod = request.object;
  if (request.operation !== undefined && request.operation !== 'CREATE') return undefined;
  if (!pod?.metadata?.labels?.[productLabel]) return undefined;
  const forged: JsonPatch = Object.keys(pod.metadata.annotations ?? {})
    .filter((key) => key.startsWith(`${group}/`) && key !== annotations.nonce && !userAnnotations.has(key))
    .map((key) => ({ op: 'remove', path: `/metadata/annotations/${pointerEscape(key)}` }));
  const gates = pod.spec?.schedulingGates;
  const gate: JsonPatch = isGated(pod)
    ? []
    : [gates ? { op: 'add', path: '/spec/schedulingGates/-', value: { name: schedulingGate } } : { op: 'add', path: '/spec/schedulingGates', value: [{ name: schedulingGate }] }];
  const nonceAnnotation: JsonPatch[number] = pod.metadata.annotations
    ? { op: 'add', path: `/metadata/annotations/${pointerEscape(annotations.nonce)}`, value: nonce }
    : { op: 'add', path: '/metadata/annotations', value: { [annotations.nonce]: nonce } };
  return [...gate, ...forged, nonceAnnotation];
}

/** A JSON Pointer token (RFC 6901): ~ and / escaped. */
function pointerEscape(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function admit(request: AdmissionRequest, nonce: string = newNonce()): AdmissionResponse {
  const patch = gatePatch(request, nonce);
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
  if (object !== undefined && (typeof object !== 'object' || object === null || Array.isArray(object))) return 'request.object is not an object';
  return request as AdmissionRequest;
}
