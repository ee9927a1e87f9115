/*
 * Layout of one shared-memory segment: a header page, then one single-producer /
 * single-consumer ring per direction. "a" is the peer that created the segment, "b" the
 * one that attached to it. The JavaScript side (src/transports/shm/ring.ts) reads and
 * writes the rings in place through an external ArrayBuffer; these offsets are exported
 * by the addon so both sides use one definition.
 *
 *  0                 64                128               192               256
 *  +-----------------+-----------------+-----------------+-----------------+---- ... 4096
 *  | magic version   | ring a->b       | ring a->b       | ring a->b       | ring b->a ...
 *  | ring_bytes      |  head (a writes)|  tail (b writes)|  flags          |  (same three
 *  | closed_by       |                 |                 |  sleeping (b)   |   lines at
 *  |                 |                 |                 |  waiting  (a)   |   +256..+448)
 *  +-----------------+-----------------+-----------------+-----------------+---- ... 4096
 *  4096                                    4096 + ring_bytes                4096 + 2*ring_bytes
 *  +---------------------------------------+--------------------------------+
 *  | data of ring a->b                     | data of ring b->a              |
 *  +---------------------------------------+--------------------------------+
 *
 * Each ring: head and tail are byte counters that only grow (mod 2^32); the bytes in
 * use are head - tail, the byte at counter c lives at data[c & (ring_bytes - 1)].
 *
 *        tail (consumer)                 head (producer)
 *          v                               v
 *   +------+-------------------------------+-------------------+
 *   | free | rec | rec | rec ... (in use)  | free              |   wraps at ring_bytes
 *   +------+-------------------------------+-------------------+
 *
 * A record is an 8-byte-aligned u32 word `piece_bytes | MORE` followed by the piece;
 * MORE (bit 31) says the frame continues in the next record, so a frame larger than the
 * ring streams through it in pieces. A piece may wrap around the end of the data area.
 *
 * Wake-ups: before sleeping, the consumer stores sleeping = 1 and then loads head again
 * (both sequentially consistent); the producer stores head and then loads sleeping (both
 * sequentially consistent). One of the two must see the other's store, so either the
 * consumer finds the data or the producer sees the flag, swaps it back to 0 and writes
 * the consumer's eventfd doorbell: no wake-up is lost. The same handshake, with
 * `waiting` and tail, wakes a producer that found the ring full.
 */
#ifndef COHORT_RING_LAYOUT_H
#define COHORT_RING_LAYOUT_H

#include <stdint.h>

#define COHORT_SHM_MAGIC 0x4d485343u /* "CSHM" little-endian */
#define COHORT_SHM_VERSION 1u

#define COHORT_OFF_MAGIC 0
#define COHORT_OFF_VERSION 4
#define COHORT_OFF_RING_BYTES 8
#define COHORT_OFF_CLOSED_BY 12
/* Control block of ring d (0: a->b, 1: b->a) starts at COHORT_OFF_RING0 + d * COHORT_RING_STRIDE. */
#define COHORT_OFF_RING0 64
#define COHORT_RING_STRIDE 256
#define COHORT_RING_HEAD 0
#define COHORT_RING_TAIL 64
#define COHORT_RING_SLEEPING 128
#define COHORT_RING_WAITING 132
/* The CPU the consumer last ran on, so a spinner can tell when it would steal its peer's CPU. */
#define COHORT_RING_CONSUMER_CPU 136
#define COHORT_HEADER_BYTES 4096
#define COHORT_RECORD_MORE 0x80000000u

static_assert(COHORT_OFF_RING0 + 2 * COHORT_RING_STRIDE <= COHORT_HEADER_BYTES, "ring control blocks fit the header page");

#endif
