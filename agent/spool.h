/* spool: the flow batches (flows.h) that wait for the controller's
 * acknowledgement, kept in order as append-only segment files
 * DIR/flows.d/SEQ.seg, with the first of them also in memory for sending.
 *
 * A batch is one record appended to the open segment when it is made (so
 * a kill -9 loses none of them); its acknowledgement (or its quarantine)
 * is a small "done" record appended after it. A segment is closed once it
 * passes SPOOL_SEGMENT_MAX, and unlinked once every batch in it is done
 * and every segment before it is gone. Memory holds the first batches, up
 * to SPOOL_MEM_MAX bytes; the rest is read forward from the segments, at
 * most SPOOL_REFILL_MAX bytes a call. No file is ever rewritten: segments
 * only grow, then go (a half-written record is cut off again at once).
 *
 * fsync policy: nothing in the event loop waits for the disk. The page
 * cache survives a crashed process, so a kill -9 loses nothing appended;
 * spool_sync(), called every flow tick, starts the writeback of what
 * batches were appended since (sync_file_range(SYNC_FILE_RANGE_WRITE),
 * which does not wait for it), and done records are never synced for
 * themselves (lost, they cost a resend). fdatasync() and the directory's
 * fsync() come only at a clean stop (spool_stop) and after a take-over at
 * start (spool_flush). A power cut may so lose the batches of the last
 * seconds (what the file system had not committed: ext4 commits every 5 s),
 * never older ones.
 *
 * At start, spool_new() reads every segment: a record cut short at a
 * segment's end (a crash in mid-write) is dropped, a record whose checksum
 * is wrong is handed to the bad-record callback (quarantined, counted), and
 * so is the rest of a segment after a header that cannot be read; batches a
 * done record names are skipped. A file that does not start with
 * SPOOL_MAGIC (another version's) is left alone.
 *
 * Record: "K EPOCH SEQ LEN CRC PAYLOAD\n", K 'B' (a batch; PAYLOAD is its
 * FLOWS body) or 'D' (done; no payload), EPOCH and SEQ 16 hex digits, LEN
 * (of PAYLOAD) and CRC (CRC-32C of "K EPOCH SEQ LEN" and PAYLOAD) 8 each.
 * A segment starts with the line SPOOL_MAGIC. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bulkhead/common.h"

#define SPOOL_DIR	  "flows.d"
#define SPOOL_MAGIC	  "bulkhead-flows 1\n"
#define SPOOL_MEM_MAX	  (8u << 20)  /* bytes of batches held in memory */
#define SPOOL_DISK_MAX	  (72u << 20) /* bytes of segments: memory's 8 MiB and 64 MiB more */
#define SPOOL_SEGMENT_MAX (1u << 20)  /* a segment is closed past this size */
#define SPOOL_RECORD_MAX  (16u << 20) /* a longer record is a broken frame */
#define SPOOL_REFILL_MAX  (1u << 20)  /* bytes read back into memory per call */
#define SPOOL_HEADER_LEN  54	      /* "K EPOCH SEQ LEN CRC " */

/* ---- records (pure) ---- */

struct spool_record {
	char kind; /* 'B' or 'D' */
	uint64_t epoch, seq;
	uint32_t len, crc; /* of the payload; the checksum as the header says */
};

uint32_t spool_crc32c(uint32_t crc, const void *data, size_t len);
/* Writes the header of a record of payload (len bytes) into
 * hdr[SPOOL_HEADER_LEN + 1] (NUL-terminated). */
void spool_record_header(char *hdr, char kind, uint64_t epoch, uint64_t seq, const char *payload, size_t len);
/* Parses a header: 0, or -EBADMSG when it is not one. */
BH_MUST_CHECK int spool_header_parse(const char *hdr, struct spool_record *r);
/* Whether tail (r->len + 1 bytes: the payload and its '\n') completes r:
 * 0, or -EBADMSG (checksum or framing wrong). */
BH_MUST_CHECK int spool_record_check(const struct spool_record *r, const char *hdr, const char *tail);

/* ---- the spool ---- */

/* A batch in memory, in the order batches go. */
struct spool_batch {
	uint64_t epoch, seq;
	char *text; /* the FLOWS body, NUL-terminated; the spool's */
	size_t len;
	bool in_flight; /* the sender's: sent, not yet answered */
	uint64_t sent_ms;
	struct spool_batch *next;
	struct spool_segment *seg; /* the segment holding it; NULL: memory only (the disk failed) */
};

/* What cannot be read back: text (len bytes, not NUL-terminated; may be
 * cut or not text) and why. */
typedef void (*spool_bad_fn)(void *arg, const char *text, size_t len, const char *reason);

struct spool;

/* state_dir NULL: memory only. Reads back what earlier runs left in the
 * segments (bad records to bad(arg, ...)); NULL only when DIR/flows.d
 * cannot be made (logged; the spool then stays in memory). */
struct spool *spool_new(const char *state_dir, spool_bad_fn bad, void *arg);
/* At a clean stop: batches held in memory only go to disk if they can,
 * then every segment is synced. */
void spool_stop(struct spool *s);
/* Only frees (accepts NULL). */
void spool_free(struct spool *s);

/* Appends batch (epoch, seq), text of len bytes (taken; freed on failure):
 * to disk, and to memory while there is room and nothing waits on disk
 * before it. 0; 1 when it is held in memory only (the disk refused it);
 * -ENOSPC when it could be kept nowhere (the spool is full, or the disk
 * failed and memory is full): dropped. SPOOL_UNCAPPED: past
 * SPOOL_DISK_MAX too (what an upgrade takes over must not be lost). */
#define SPOOL_UNCAPPED 1u
BH_MUST_CHECK int spool_add(struct spool *s, uint64_t epoch, uint64_t seq, char *text, size_t len,
			    unsigned flags);
/* The first batch in memory (NULL: none); the next with b->next. */
struct spool_batch *spool_head(struct spool *s);
struct spool_batch *spool_find(struct spool *s, uint64_t epoch, uint64_t seq);
/* Acknowledged or quarantined: b leaves the spool (and is freed). */
void spool_done(struct spool *s, struct spool_batch *b);
/* Reads batches from disk into memory while there is room (bounded). */
void spool_refill(struct spool *s);
/* Writes what the disk refused once it can; starts the writeback of what
 * was appended (see above). */
void spool_sync(struct spool *s);
/* fdatasync()s everything appended, and the directory (not in the loop:
 * at start and at a stop). */
void spool_flush(struct spool *s);

struct spool_counts {
	uint64_t mem_batches, mem_bytes;
	uint64_t disk_batches; /* waiting on disk, not yet in memory */
	uint64_t disk_bytes, segments;
	uint64_t to_disk;  /* batches that went to disk only (memory was full) */
	uint64_t mem_only; /* batches in memory that the disk did not take */
};
void spool_counts(const struct spool *s, struct spool_counts *c);
