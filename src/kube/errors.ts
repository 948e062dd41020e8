// A short, log-friendly description of an error: for an API server answer, its status and
// message, and for the answers a missing install gives, what to apply.
import { ApiError } from './api.js';

export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    const hint = installHint(error);
    return hint ? `${error.message} (${hint})` : error.message;
  }
  return error instanceof Error ? error.message : String(error);
}

/** What to do about an answer that means part of the install bundle is missing. */
function installHint(error: ApiError): string | undefined {
  if (error.code === 404) {
    const custom = /^\/apis\/([^/]+)\/[^/]+\/(?:namespaces\/[^/]+\/)?([^/?]+)/.exec(error.path);
    // A group of Kubernetes' own is always served; any other is a CustomResourceDefinition's.
    if (custom?.[1] && custom[2] && !custom[1].endsWith('k8s.io') && /could not find the requested resource|page not found/.test(error.message)) {
      return `the CustomResourceDefinition ${custom[2]}.${custom[1]} is not installed: kubectl apply -f crds/`;
    }
    if (error.path.includes('/mutatingwebhookconfigurations/')) return 'the webhook configuration is not installed: kubectl apply -f config/install.yaml';
    const namespace = /namespaces "([^"]+)" not found/.exec(error.message)?.[1];
    if (namespace) return `namespace ${namespace} does not exist: kubectl apply -f config/install.yaml creates the operator's, or set POD_NAMESPACE`;
  }
  // A refusal by an admission policy (the operator's own limits) is no missing permission.
  if (error.code === 403 && !error.message.includes('ValidatingAdmissionPolicy')) return "the operator's ServiceAccount lacks this permission: kubectl apply -f config/install.yaml installs its RBAC";
  return undefined;
}

/** The API server has no such object (404): "gone", for a read, a delete or a write. */
export function isNotFound(error: unknown): boolean {
  return error instanceof ApiError && error.code === 404;
}

/** The write lost a race (409): someone else changed the object since it was read. */
export function isConflict(error: unknown): boolean {
  return error instanceof ApiError && error.code === 409;
}

/**
 * The object a write addressed is gone: deleted (404), or replaced by a successor of the same name
 * whose uid differs from the one the write named (409 from a uid precondition of an eviction or a
 * delete; 422 "metadata.uid: field is immutable" from a patch that names the uid). Any other 409
 * (an eviction that raced a change of the pod) is not: it is worth trying again.
 */
export function isGoneOrReplaced(error: unknown): boolean {
  if (!(error instanceof ApiError)) return false;
  if (isNotFound(error)) return true;
  if (isConflict(error)) return /UID in (the )?precondition/i.test(error.message);
  if (error.code !== 422) return false;
  try {
    const status = JSON.parse(error.body) as { details?: { causes?: { field?: string }[] } };
    return status.details?.causes?.some((cause) => cause.field === 'metadata.uid') === true;
  } catch {
    return false;
  }
}
