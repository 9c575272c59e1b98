// NAT-PMP requests [RFC 6886 §3]: the external address and MAP on the same tables as PCP
// (NAT-PMP has no nonce and no FILTERs; its mappings are flagged MAPF_NATPMP).

import * as W from "./wire";
import * as A from "./abi";
import { rd16, rd32 } from "./bytes";
import { mappingsPerSubscriber, protocolSupported } from "./config";
import { data, finishNatPmpAddress, finishNatPmpMap } from "./codec";
import { now } from "./clock";
import { M_EXTERNAL_PORT, M_FAMILY, M_FLAGS, M_MAP_EXPIRY, M_NONCE, M_PROTOCOL, M_SUB_NEXT, NO_POOL, S_LIST, S_MAPPINGS, pairedPool } from "./layout";
import { mappings, subscribers } from "./tables";
import { pickPool, poolAddr, poolHasFamily } from "./pool";
import { hasInbound, wheelLink } from "./wheel";
import { createSubscriber, findHeld, findMapping, findSubscriber } from "./lookup";
import { emit } from "./events";
import { liveOrEnded, removeInbound, renewInbound } from "./lifecycle";
import { Alloc, allocResult, allocate, commitAllocation, reclaimHeld } from "./allocation";
import { clampLifetime } from "./request";
import { MR_EXTERNAL_PORT, findMirror, hasMirrors, mirrors } from "./mirrors";

export const zeroNonce = memory.data(16, 16);
// ::ffff:0.0.0.0, the IPv4 "any address" suggestion NAT-PMP requests amount to.
const anyV4 = memory.data<u8>([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]);

function natPmpResult(pcp: u32): u32 {
  if (pcp == W.RESULT_NOT_AUTHORIZED) return W.NATPMP_RESULT_NOT_AUTHORIZED;
  if (pcp == W.RESULT_UNSUPP_PROTOCOL || pcp == W.RESULT_NETWORK_FAILURE) return W.NATPMP_RESULT_NETWORK_FAILURE;
  return W.NATPMP_RESULT_NO_RESOURCES;
}

export function handleNatPmp(slot: usize): void {
  const d = data(slot);
  const opcode = <u32>load<u8>(slot + A.SLOT_OPCODE);
  const addr = slot + A.SLOT_SRC_ADDR;
  let sub = findSubscriber(addr, 0);
  if (opcode == W.NATPMP_OP_ADDRESS) {
    let pool = sub != 0 ? pairedPool(subscribers.at(sub), 0) : NO_POOL;
    if (pool == NO_POOL) pool = pickPool(0);
    if (pool == NO_POOL) return finishNatPmpAddress(slot, W.NATPMP_RESULT_NETWORK_FAILURE, 0);
    return finishNatPmpAddress(slot, W.NATPMP_RESULT_SUCCESS, rd32(poolAddr(pool) + 12));
  }
  const protocol: u32 = opcode == W.NATPMP_OP_MAP_UDP ? W.PROTO_UDP : W.PROTO_TCP;
  const internalPort = rd16(d + W.NATPMP_INTERNAL_PORT);
  const sugPort = rd16(d + W.NATPMP_SUGGESTED_PORT);
  const requested = rd32(d + W.NATPMP_REQ_LIFETIME);
  const clientPort = <u32>load<u16>(slot + A.SLOT_SRC_PORT);
  if (requested == 0) {
    // Delete one [6886 §3.4], or all of this protocol for internal port 0.
    // Another shard's static of the port (or, for all ports, any of them) is not deletable.
    let result = (internalPort != 0 ? findMirror(addr, 0, protocol, internalPort, 0) != 0 : hasMirrors(addr, protocol)) ? W.NATPMP_RESULT_NOT_AUTHORIZED : W.NATPMP_RESULT_SUCCESS;
    if (sub != 0) {
      if (internalPort != 0) {
        const m = findMapping(addr, protocol, internalPort, 0);
        if (m != 0 && liveOrEnded(m) != 0) {
          const r = mappings.at(m);
          if (load<u8>(r + M_FLAGS) & A.MAPF_STATIC) result = W.NATPMP_RESULT_NOT_AUTHORIZED;
          else if (hasInbound(r)) removeInbound(m);
        }
      } else {
        let m = load<u32>(subscribers.at(sub) + S_LIST);
        while (m != 0) {
          const r = mappings.at(m);
          const next = load<u32>(r + M_SUB_NEXT);
          const flags = <u32>load<u8>(r + M_FLAGS);
          if (<u32>load<u8>(r + M_PROTOCOL) == protocol && <u32>load<u8>(r + M_FAMILY) == 0 && (flags & A.MAPF_HELD) == 0) {
            if (flags & A.MAPF_STATIC) result = W.NATPMP_RESULT_NOT_AUTHORIZED;
            else if (hasInbound(r)) removeInbound(m);
          }
          m = next;
        }
      }
    }
    return finishNatPmpMap(slot, result, 0, 0);
  }
  if (internalPort == 0) return finishNatPmpMap(slot, W.NATPMP_RESULT_NOT_AUTHORIZED, 0, 0);
  if (!protocolSupported(protocol)) return finishNatPmpMap(slot, W.NATPMP_RESULT_NOT_AUTHORIZED, 0, 0);
  if (!poolHasFamily(0)) return finishNatPmpMap(slot, W.NATPMP_RESULT_NETWORK_FAILURE, 0, 0);
  const mirror = findMirror(addr, 0, protocol, internalPort, 0);
  if (mirror != 0) return finishNatPmpMap(slot, W.NATPMP_RESULT_SUCCESS, <u32>load<u16>(mirrors.at(mirror) + MR_EXTERNAL_PORT), W.STATIC_MAPPING_LIFETIME);
  // Never longer than asked [6886 §3.3]; minLifetime is a PCP rule [6887 §15].
  const lifetime = clampLifetime(requested, 1);
  let m = sub != 0 ? findMapping(addr, protocol, internalPort, 0) : 0;
  if (m != 0 && liveOrEnded(m) == 0) {
    m = 0;
    sub = findSubscriber(addr, 0);
  }
  if (m != 0) {
    // An existing mapping of the endpoint keeps its port [6886 §3.3]; NAT-PMP has no nonce.
    const r = mappings.at(m);
    const flags = <u32>load<u8>(r + M_FLAGS);
    if (flags & A.MAPF_STATIC) return finishNatPmpMap(slot, W.NATPMP_RESULT_SUCCESS, <u32>load<u16>(r + M_EXTERNAL_PORT), W.STATIC_MAPPING_LIFETIME);
    const wasInbound = hasInbound(r);
    // NAT-PMP has no nonce: a part it adds gets none, a refresh keeps the stored one.
    renewInbound(m, wasInbound, wasInbound ? r + M_NONCE : zeroNonce, clientPort, lifetime);
    return finishNatPmpMap(slot, W.NATPMP_RESULT_SUCCESS, <u32>load<u16>(r + M_EXTERNAL_PORT), lifetime);
  }
  if (sub != 0 && load<u32>(subscribers.at(sub) + S_MAPPINGS) >= mappingsPerSubscriber) return finishNatPmpMap(slot, W.NATPMP_RESULT_NO_RESOURCES, 0, 0);
  // The suggestion is a request for a port on the subscriber's address ("any" address).
  const held = sub != 0 ? findHeld(addr, protocol, internalPort, 0, zeroNonce) : 0;
  let a: Alloc;
  if (held != 0) {
    a = reclaimHeld(held, anyV4, sugPort, false);
  } else {
    a = allocate(sub, 0, protocol, internalPort, anyV4, sugPort, zeroNonce, false);
    const result = allocResult(a);
    if (result != 0) return finishNatPmpMap(slot, natPmpResult(result), 0, 0);
  }
  if (sub == 0) {
    sub = createSubscriber(addr, 0);
    if (sub == 0) return finishNatPmpMap(slot, W.NATPMP_RESULT_NO_RESOURCES, 0, 0);
  }
  m = commitAllocation(a, sub, protocol, internalPort, 0, A.MAPF_INBOUND | A.MAPF_NATPMP, clientPort);
  const r = mappings.at(m);
  store<u32>(r + M_MAP_EXPIRY, now + lifetime);
  wheelLink(m, now + lifetime);
  emit(A.EVENT_CREATE, m);
  finishNatPmpMap(slot, W.NATPMP_RESULT_SUCCESS, <u32>load<u16>(r + M_EXTERNAL_PORT), lifetime);
}
