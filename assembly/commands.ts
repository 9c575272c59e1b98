// The command slot: every control operation of the engine goes through one export,
// command(), as datagrams go through the batch slots. The host writes an opcode and its
// arguments into the slot, calls command(), and reads the results from the same slot
// (layout and opcodes: the CMD section of abi.ts; docs/boundary.md says why).
// Control plane only: the batch path (processBatch, serveRange, expire) is not routed
// here, so the switch below costs nothing per packet.

import * as A from "./abi";
import {
  errorLifetime,
  finishSuccess,
  finishError,
  finishNatPmpAddress,
  finishNatPmpMap,
  encodeAnnounce,
  encodeNatPmpAnnounce,
  slotsBase,
  statsBase,
  prefix64Base,
} from "./codec";
import { scratchBase } from "./tables";
import { engineBytes, setDataplaneDown } from "./engine";
import { poolAdd, poolSize, poolAddressAt, poolFreeBlocks, poolIsRetired } from "./pool";
import { poolRetire, rehomeNext, rehomeMapping, rehomeFrom } from "./rehome";
import { eventsBase, eventsHead, eventsTail, eventsConsume } from "./events";
import { addStatic, removeStatic, deleteSubscriber, subscriberMappings, subscriberBlocks, lookupMapping, lookupExternal, describeMapping, mappingsUsed, mappingFilter, listScan, listBase, listNext } from "./operator";
import { mappingDescription, descriptionBase } from "./descriptions";
import { persistBase, persistBytes, persistNext, persistEvents, persistGone, persistTable } from "./persist";
import { restoreRecords, restoreDropped } from "./restore";
import { mirrorAdd, mirrorsClear, mirrorCount } from "./mirrors";
import { registerRealm, findRealm, realmIdentifier } from "./realms";

const slot = memory.data(<i32>A.CMDSLOT_SIZE, 16);
const table = memory.data(<i32>A.REGION_TABLE_SIZE, 16);

/** Base of every fixed region, as a table of u32 at REGION_* offsets; its address. */
export function regions(): usize {
  store<u32>(table + A.REGION_SLOTS, <u32>slotsBase());
  store<u32>(table + A.REGION_STATS, <u32>statsBase());
  store<u32>(table + A.REGION_SCRATCH, <u32>scratchBase());
  store<u32>(table + A.REGION_PREFIX64, <u32>prefix64Base());
  store<u32>(table + A.REGION_LIST, <u32>listBase());
  store<u32>(table + A.REGION_DESCRIPTION, <u32>descriptionBase());
  store<u32>(table + A.REGION_COMMAND, <u32>slot);
  return table;
}

@inline function arg(i: u32): u32 {
  return load<u32>(slot + A.CMDSLOT_ARGS + (i << 2));
}

@inline function put(i: u32, value: u32): void {
  store<u32>(slot + A.CMDSLOT_RESULTS + (i << 2), value);
}

/** The persistence buffer and what the last persistence call wrote to it, in r1 and r2. */
function putPersisted(): void {
  put(1, <u32>persistBase());
  put(2, persistBytes());
}

/** Executes the command in the slot; CMDSTATUS_OK, or CMDSTATUS_UNKNOWN (nothing done). */
export function command(): u32 {
  switch (load<u32>(slot + A.CMDSLOT_OPCODE)) {
    case A.CMD_ERROR_LIFETIME: put(0, errorLifetime(arg(0))); break;
    case A.CMD_FINISH_SUCCESS: finishSuccess(<usize>arg(0), arg(1), arg(2)); break;
    case A.CMD_FINISH_ERROR: finishError(<usize>arg(0), arg(1), arg(2)); break;
    case A.CMD_FINISH_NATPMP_ADDRESS: finishNatPmpAddress(<usize>arg(0), arg(1), arg(2)); break;
    case A.CMD_FINISH_NATPMP_MAP: finishNatPmpMap(<usize>arg(0), arg(1), arg(2), arg(3)); break;
    case A.CMD_ANNOUNCE: put(0, encodeAnnounce(<usize>arg(0), arg(1))); break;
    case A.CMD_ANNOUNCE_NATPMP: put(0, encodeNatPmpAnnounce(<usize>arg(0), arg(1), arg(2))); break;
    case A.CMD_ENGINE_BYTES: put(0, <u32>engineBytes()); break;
    case A.CMD_POOL_ADD: put(0, <u32>poolAdd()); break;
    case A.CMD_POOL_SIZE: put(0, poolSize()); break;
    case A.CMD_POOL_ENTRY: {
      const i = arg(0);
      put(0, <u32>poolAddressAt(i));
      put(1, poolFreeBlocks(i));
      put(2, poolIsRetired(i) ? 1 : 0);
      break;
    }
    case A.CMD_POOL_RETIRE: put(0, poolRetire(arg(0), arg(1))); break;
    case A.CMD_REHOME_NEXT: {
      put(0, rehomeNext(arg(0), arg(1)));
      put(1, rehomeMapping());
      put(2, rehomeFrom());
      break;
    }
    case A.CMD_EVENTS: {
      put(0, <u32>eventsBase());
      put(1, eventsHead());
      put(2, eventsTail());
      break;
    }
    case A.CMD_EVENTS_CONSUME: eventsConsume(arg(0)); break;
    case A.CMD_ADD_STATIC: put(0, addStatic(arg(0), arg(1), arg(2))); break;
    case A.CMD_REMOVE_STATIC: put(0, removeStatic(arg(0), arg(1), arg(2), arg(3) != 0)); break;
    case A.CMD_DELETE_SUBSCRIBER: put(0, deleteSubscriber(arg(0))); break;
    case A.CMD_SUBSCRIBER_USAGE: {
      put(0, subscriberMappings(arg(0)));
      put(1, subscriberBlocks(arg(0)));
      break;
    }
    case A.CMD_LOOKUP_MAPPING: put(0, lookupMapping(arg(0), arg(1), arg(2), arg(3))); break;
    case A.CMD_LOOKUP_EXTERNAL: put(0, lookupExternal(arg(0), arg(1), arg(2))); break;
    case A.CMD_DESCRIBE_MAPPING: put(0, describeMapping(arg(0)) ? 1 : 0); break;
    case A.CMD_MAPPINGS_USED: put(0, mappingsUsed()); break;
    case A.CMD_MAPPING_FILTER: put(0, mappingFilter(arg(0), arg(1)) ? 1 : 0); break;
    case A.CMD_MAPPING_DESCRIPTION: put(0, mappingDescription(arg(0))); break;
    case A.CMD_LIST_SCAN: {
      put(0, listScan(arg(0), arg(1), arg(2), arg(3), arg(4), arg(5), arg(6)));
      put(1, listNext());
      break;
    }
    case A.CMD_PERSIST_EVENTS: {
      put(0, persistEvents(arg(0), arg(1), arg(2)));
      putPersisted();
      break;
    }
    case A.CMD_PERSIST_GONE: {
      persistGone(arg(0), arg(1), arg(2));
      putPersisted();
      break;
    }
    case A.CMD_PERSIST_TABLE: {
      put(0, persistTable(arg(0), arg(1), arg(2)));
      putPersisted();
      put(3, persistNext());
      break;
    }
    case A.CMD_PERSIST_BUFFER: put(1, <u32>persistBase()); break;
    case A.CMD_RESTORE_RECORDS: put(0, restoreRecords(arg(0), arg(1), arg(2))); break;
    case A.CMD_RESTORE_DROPPED: put(0, restoreDropped(arg(0))); break;
    case A.CMD_DATAPLANE_DOWN: setDataplaneDown(arg(0) != 0); break;
    case A.CMD_MIRROR_ADD: put(0, mirrorAdd(arg(0), arg(1), arg(2), arg(3) != 0)); break;
    case A.CMD_MIRRORS_CLEAR: mirrorsClear(); break;
    case A.CMD_MIRROR_COUNT: put(0, mirrorCount()); break;
    case A.CMD_REGISTER_REALM: put(0, registerRealm(arg(0))); break;
    case A.CMD_FIND_REALM: put(0, findRealm(arg(0))); break;
    case A.CMD_REALM_IDENTIFIER: put(0, realmIdentifier(arg(0))); break;
    default: return A.CMDSTATUS_UNKNOWN;
  }
  return A.CMDSTATUS_OK;
}
