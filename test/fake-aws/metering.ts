// AWS Marketplace Metering operations as the fake answers them (AWS JSON 1.1 bodies).
import { createHash, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { AwsFault, type FakeState } from './state.js';

const productCodePattern = /^[-a-zA-Z0-9/=:_.@]{1,255}$/;
const hourMs = 60 * 60 * 1000;

export interface SigningKeys {
  /** The key whose public half the fake publishes. */
  published: KeyObject;
  /** A key for answers that must not verify. */
  rogue: KeyObject;
}

type Body = Record<string, unknown>;

/** `caller`: who signed the call, as AWS de-duplicates usage by it (see MeteringRecord). */
export async function handleMetering(operation: string, body: Body, state: FakeState, keys: SigningKeys, caller: string): Promise<Body> {
  switch (operation) {
    case 'RegisterUsage':
      return registerUsage(body, state, keys, caller);
    case 'MeterUsage':
      return meterUsage(body, state, caller);
    case 'BatchMeterUsage':
      return batchMeterUsage(body, state);
    case 'ResolveCustomer':
      return resolveCustomer(body, state);
    default:
      throw new AwsFault(400, 'UnknownOperationException', `unknown operation ${operation}`);
  }
}

/** Applies the product's configured faults: delay, throttling, 5xx, a fixed error. */
export async function applyFaults(productCode: string, state: FakeState): Promise<void> {
  const behaviour = state.behaviour(productCode);
  if (behaviour.delayMs) {
    state.delayed.set(productCode, (state.delayed.get(productCode) ?? 0) + 1);
    await new Promise((resolve) => setTimeout(resolve, behaviour.delayMs));
    state.delayed.set(productCode, (state.delayed.get(productCode) ?? 1) - 1);
  }
  if (state.nextCallHits(productCode, 'throttle', behaviour.throttleShare)) throw new AwsFault(400, 'ThrottlingException', 'Rate exceeded');
  if (state.nextCallHits(productCode, '5xx', behaviour.serverErrorShare)) {
    throw new AwsFault(500, 'InternalServiceErrorException', 'An internal error has occurred. Retry your request.');
  }
  if (behaviour.error) throw new AwsFault(behaviour.error.startsWith('AccessDenied') ? 403 : 400, behaviour.error, `configured answer for ${productCode}`);
}

/** Callers with a role of the product's notEntitledRoles are refused, as AWS refuses a customer without a subscription. */
function refuseUnentitled(productCode: string, state: FakeState, caller: string): void {
  if (state.behaviour(productCode).notEntitledRoles?.some((role) => caller.startsWith(`${role}/`))) {
    throw new AwsFault(400, 'CustomerNotEntitledException', `the customer behind ${caller} is not entitled to ${productCode}`);
  }
}

function requireProductCode(body: Body): string {
  const code = body.ProductCode;
  if (typeof code !== 'string' || !productCodePattern.test(code)) {
    throw new AwsFault(400, 'ValidationException', "1 validation error detected: Value at 'productCode' failed to satisfy constraint");
  }
  return code;
}

async function registerUsage(body: Body, state: FakeState, keys: SigningKeys, caller: string): Promise<Body> {
  const productCode = requireProductCode(body);
  const version = body.PublicKeyVersion;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw new AwsFault(400, 'ValidationException', "1 validation error detected: Value at 'publicKeyVersion' failed to satisfy constraint: Member must have value greater than or equal to 1");
  }
  const nonce = body.Nonce;
  if (nonce !== undefined && (typeof nonce !== 'string' || nonce.length > 255)) {
    throw new AwsFault(400, 'ValidationException', "1 validation error detected: Value at 'nonce' failed to satisfy constraint: Member must have length less than or equal to 255");
  }
  await applyFaults(productCode, state);
  refuseUnentitled(productCode, state, caller);
  const behaviour = state.behaviour(productCode);
  const claims = { productCode, publicKeyVersion: version, nonce, iat: Math.floor(state.clock.now() / 1000) + (behaviour.clockAheadSeconds ?? 0) };
  const signature = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'PS256', typ: 'JWT' })
    .sign(behaviour.badSignature ? keys.rogue : keys.published);
  return {
    Signature: signature,
    ...(behaviour.publicKeyRotationTimestamp === undefined ? {} : { PublicKeyRotationTimestamp: behaviour.publicKeyRotationTimestamp }),
  };
}

function timestampMs(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new AwsFault(400, 'ValidationException', `${field} must be a timestamp`);
  return value * 1000;
}

function checkQuantity(value: unknown, field: string): number {
  const quantity = value ?? 0;
  if (typeof quantity !== 'number' || !Number.isInteger(quantity) || quantity < 0 || quantity > 2147483647) {
    throw new AwsFault(400, 'ValidationException', `${field} must be an integer from 0 to 2147483647`);
  }
  return quantity;
}

async function meterUsage(body: Body, state: FakeState, caller: string): Promise<Body> {
  const productCode = requireProductCode(body);
  const dimension = body.UsageDimension;
  if (typeof dimension !== 'string' || dimension.length < 1 || dimension.length > 255) {
    throw new AwsFault(400, 'ValidationException', "Value at 'usageDimension' failed to satisfy constraint");
  }
  const time = timestampMs(body.Timestamp, 'Timestamp');
  const quantity = checkQuantity(body.UsageQuantity, 'UsageQuantity');
  const allocations = body.UsageAllocations;
  if (allocations !== undefined) {
    if (!Array.isArray(allocations) || allocations.length < 1 || allocations.length > 2500) {
      throw new AwsFault(400, 'InvalidUsageAllocationsException', 'UsageAllocations must hold 1 to 2500 allocations');
    }
    const sum = (allocations as Body[]).reduce((total, a) => total + checkQuantity(a.AllocatedUsageQuantity, 'AllocatedUsageQuantity'), 0);
    if (sum !== quantity) throw new AwsFault(400, 'InvalidUsageAllocationsException', `allocations sum to ${sum}, not the usage quantity ${quantity}`);
    const tagSets = (allocations as Body[]).map((a) => checkTags(a.Tags).join(','));
    if (new Set(tagSets).size !== tagSets.length) throw new AwsFault(400, 'InvalidUsageAllocationsException', 'each UsageAllocation must have a unique set of tags');
  }
  const clientToken = body.ClientToken;
  if (clientToken !== undefined && (typeof clientToken !== 'string' || clientToken.length < 1 || clientToken.length > 64)) {
    throw new AwsFault(400, 'ValidationException', 'ClientToken must be 1 to 64 characters');
  }
  await applyFaults(productCode, state);
  refuseUnentitled(productCode, state, caller);
  const now = state.clock.now();
  if (time < now - 6 * hourMs || time > now + hourMs) {
    throw new AwsFault(400, 'TimestampOutOfBoundsException', 'Timestamp must be within the last 6 hours');
  }
  if (body.DryRun === true) return {};

  const hour = Math.floor(time / hourMs) * hourMs;
  const fingerprint = createHash('sha256').update(JSON.stringify([productCode, dimension, hour, quantity, allocations ?? null])).digest('hex');
  if (typeof clientToken === 'string') {
    const previous = state.clientTokens.get(clientToken);
    if (previous !== undefined && previous !== fingerprint) throw new AwsFault(409, 'IdempotencyConflictException', 'ClientToken was used with other parameters');
    state.clientTokens.set(clientToken, fingerprint);
  }
  // One record per caller, product, dimension and hour.
  const key = `${caller}|${productCode}|${dimension}|${hour}`;
  const existing = state.meteringRecords.get(key);
  if (existing) {
    if (existing.quantity !== quantity) {
      throw new AwsFault(400, 'DuplicateRequestException', 'A metering record has already been emitted by the same EC2 instance, ECS task, or EKS pod for the given {usageDimension, timestamp} with a different usageQuantity.');
    }
    return { MeteringRecordId: existing.recordId };
  }
  const recordId = randomUUID();
  state.meteringRecords.set(key, { caller, productCode, dimension, hour, quantity, ...(allocations === undefined ? {} : { allocations: allocationsOf(allocations as Body[]) }), recordId });
  return { MeteringRecordId: recordId };
}

const tagPattern = /^[a-zA-Z0-9+ -=._:/@]+$/;

/** Up to 5 tags, keys of 1–100 and values of 1–256 characters of AWS's tag charset; as `key=value`, sorted. */
function checkTags(tags: unknown): string[] {
  if (tags === undefined) return [];
  if (!Array.isArray(tags) || tags.length < 1 || tags.length > 5) throw new AwsFault(400, 'InvalidTagException', 'an allocation has 1 to 5 tags');
  return (tags as Body[])
    .map(({ Key: key, Value: value }) => {
      const valid = typeof key === 'string' && typeof value === 'string' && key.length <= 100 && value.length <= 256 && tagPattern.test(key) && tagPattern.test(value);
      if (!valid) throw new AwsFault(400, 'InvalidTagException', `invalid tag ${JSON.stringify({ Key: key, Value: value })}`);
      return `${key}=${value}`;
    })
    .sort();
}

function allocationsOf(allocations: readonly Body[]): { quantity: number; tags: string[] }[] {
  return allocations.map((a) => ({
    quantity: Number(a.AllocatedUsageQuantity ?? 0),
    tags: (Array.isArray(a.Tags) ? (a.Tags as Body[]) : []).map((t) => `${String(t.Key)}=${String(t.Value)}`),
  }));
}

async function batchMeterUsage(body: Body, state: FakeState): Promise<Body> {
  const productCode = requireProductCode(body);
  const records = body.UsageRecords;
  if (!Array.isArray(records) || records.length > 25) throw new AwsFault(400, 'ValidationException', 'UsageRecords must hold at most 25 records');
  await applyFaults(productCode, state);
  const results = (records as Body[]).map((record) => {
    const time = timestampMs(record.Timestamp, 'Timestamp');
    if (time < state.clock.now() - 24 * hourMs || time > state.clock.now() + hourMs) {
      throw new AwsFault(400, 'TimestampOutOfBoundsException', 'Timestamp must be within the last 24 hours');
    }
    const quantity = checkQuantity(record.Quantity, 'Quantity');
    const customer = state.customers.find(
      (c) => c.productCode === productCode && (c.customerIdentifier === record.CustomerIdentifier || c.customerAWSAccountId === record.CustomerAWSAccountId),
    );
    if (!customer) return { UsageRecord: record, Status: 'CustomerNotSubscribed' };
    const hour = Math.floor(time / hourMs) * hourMs;
    const dimension = String(record.Dimension);
    const key = `batch|${productCode}|${customer.customerIdentifier}|${dimension}|${hour}`;
    const existing = state.meteringRecords.get(key);
    if (existing) return { UsageRecord: record, MeteringRecordId: existing.recordId, Status: existing.quantity === quantity ? 'Success' : 'DuplicateRecord' };
    const recordId = randomUUID();
    state.meteringRecords.set(key, { caller: customer.customerIdentifier, productCode, dimension, hour, quantity, recordId });
    return { UsageRecord: record, MeteringRecordId: recordId, Status: 'Success' };
  });
  return { Results: results, UnprocessedRecords: [] };
}

function resolveCustomer(body: Body, state: FakeState): Body {
  const token = body.RegistrationToken;
  if (typeof token !== 'string' || token.length === 0) throw new AwsFault(400, 'ValidationException', 'RegistrationToken is required');
  if (token.startsWith('expired-')) throw new AwsFault(400, 'ExpiredTokenException', 'Registration token is expired');
  const customer = state.customers.find((c) => c.registrationToken === token);
  if (!customer) throw new AwsFault(400, 'InvalidTokenException', 'Registration token is invalid');
  return {
    CustomerIdentifier: customer.customerIdentifier,
    CustomerAWSAccountId: customer.customerAWSAccountId,
    ProductCode: customer.productCode,
    ...(customer.licenseArn ? { LicenseArn: customer.licenseArn } : {}),
  };
}
