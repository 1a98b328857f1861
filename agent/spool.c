/* The flow batch spool as append-only segments (see spool.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bulkhead/log.h"
#include "spool.h"

#define MAGIC_LEN	 (sizeof(SPOOL_MAGIC) - 1)
#define CRC_SPAN	 44 /* "K EPOCH SEQ LEN": what the checksum covers before the payload */
#define SEGMENT_READ_MAX (SPOOL_SEGMENT_MAX + SPOOL_RECORD_MAX + 2 * SPOOL_HEADER_LEN)

/* ---- records ---- */

static uint32_t crc_table[8][256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1; /* Castagnoli, reflected */
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] =
			    (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t spool_crc32c(uint32_t crc, const void *data, size_t len)
{
	static bool ready;
	if (!ready) {
		crc_init();
		ready = true;
	}
	const uint8_t *p = data;
	crc = ~crc;
	for (; len >= 8; p += 8, len -= 8) { /* eight bytes a step, in any byte order */
		uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
				     (uint32_t)p[3] << 24);
		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
		      crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
	}
	for (; len; p++, len--)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p) & 0xff];
	return ~crc;
}

void spool_record_header(char *hdr, char kind, uint64_t epoch, uint64_t seq, const char *payload, size_t len)
{
	snprintf(hdr, CRC_SPAN + 1, "%c %016" PRIx64 " %016" PRIx64 " %08" PRIx32, kind, epoch, seq,
		 (uint32_t)len);
	uint32_t crc = spool_crc32c(spool_crc32c(0, hdr, CRC_SPAN), payload, len);
	snprintf(hdr + CRC_SPAN, SPOOL_HEADER_LEN - CRC_SPAN + 1, " %08" PRIx32 " ", crc);
}

/* n lower-case hex digits at s, then the separator sep. */
static bool parse_hex(const char *s, int n, char sep, uint64_t *out)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++) {
		char c = s[i];
		if (c >= '0' && c <= '9')
			v = v << 4 | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (uint64_t)(c - 'a' + 10);
		else
			return false;
	}
	if (s[n] != sep)
		return false;
	*out = v;
	return true;
}

int spool_header_parse(const char *hdr, struct spool_record *r)
{
	uint64_t epoch, seq, len, crc;
	if ((hdr[0] != 'B' && hdr[0] != 'D') || hdr[1] != ' ' || !parse_hex(hdr + 2, 16, ' ', &epoch) ||
	    !parse_hex(hdr + 19, 16, ' ', &seq) || !parse_hex(hdr + 36, 8, ' ', &len) ||
	    !parse_hex(hdr + 45, 8, ' ', &crc) || len > SPOOL_RECORD_MAX || (hdr[0] == 'D' && len))
		return -EBADMSG;
	*r = (struct spool_record){
	    .kind = hdr[0], .epoch = epoch, .seq = seq, .len = (uint32_t)len, .crc = (uint32_t)crc};
	return 0;
}

int spool_record_check(const struct spool_record *r, const char *hdr, const char *tail)
{
	if (tail[r->len] != '\n' || spool_crc32c(spool_crc32c(0, hdr, CRC_SPAN), tail, r->len) != r->crc)
		return -EBADMSG;
	return 0;
}

/* ---- the spool ---- */

struct spool_segment {
	uint64_t id;
	uint64_t size;	  /* bytes in the file */
	uint64_t end;	  /* where its whole records end: what is read back */
	bool unstarted;	  /* batches appended whose writeback was not started */
	bool unsynced;	  /* batches appended since it was last fdatasync()ed */
	uint64_t pending; /* its batches not done: in memory or still to be read */
	uint64_t unread;  /* of those, still to be read */
	int fd;		  /* for appending and syncing; -1 */
	bool from_start;  /* found at start: done records of earlier runs may name its batches */
	struct spool_segment *next;
};

struct done_key {
	uint64_t epoch, seq;
};

struct spool {
	char *dir; /* DIR/flows.d; NULL: memory only */
	int dir_fd;
	spool_bad_fn bad;
	void *bad_arg;

	struct spool_segment *segs, *last; /* oldest first */
	struct spool_segment *open;	   /* appended to; NULL: the next append makes one */
	uint64_t next_id, disk_bytes, n_segs;
	bool dir_dirty; /* a segment was made since the directory was synced */
	bool failing;	/* logged: the disk refused an append */

	struct spool_batch *head, *tail;
	uint64_t mem_batches, mem_bytes, mem_only, to_disk;

	/* Batches on disk not yet in memory, and where the next one is (only
	 * meaningful while there are some): everything before the cursor is
	 * in memory or done. */
	uint64_t backlog;
	struct spool_segment *cur;
	uint64_t cur_off;
	struct spool_segment *rd_seg; /* what rd_fd reads */
	int rd_fd;

	struct done_key *done; /* batches earlier runs marked done, sorted */
	size_t n_done;
};

static int done_cmp(const void *a, const void *b)
{
	const struct done_key *x = a, *y = b;
	if (x->epoch != y->epoch)
		return x->epoch < y->epoch ? -1 : 1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

static bool done_has(const struct spool *s, uint64_t epoch, uint64_t seq)
{
	struct done_key k = {epoch, seq};
	return s->n_done && bsearch(&k, s->done, s->n_done, sizeof(k), done_cmp);
}

static void segment_name(const struct spool_segment *g, char *buf, size_t size)
{
	snprintf(buf, size, "%016" PRIx64 ".seg", g->id);
}

static void bad(struct spool *s, const struct spool_segment *g, const char *text, size_t len,
		const char *what)
{
	char name[32], reason[128];
	segment_name(g, name, sizeof(name));
	snprintf(reason, sizeof(reason), "%s in %s/%s", what, SPOOL_DIR, name);
	if (s->bad)
		s->bad(s->bad_arg, text, len, reason);
	else
		log_error("flow spool: %s (%zu bytes)", reason, len);
}

static struct spool_segment *segment_push(struct spool *s, uint64_t id, uint64_t size)
{
	struct spool_segment *g = xcalloc(1, sizeof(*g));
	g->id = id;
	g->size = g->end = size;
	g->fd = -1;
	if (s->last)
		s->last->next = g;
	else
		s->segs = g;
	s->last = g;
	s->n_segs++;
	s->disk_bytes += size;
	if (id >= s->next_id)
		s->next_id = id + 1;
	return g;
}

static int segment_create(struct spool *s)
{
	for (int tries = 0; tries < 16; tries++) {
		char name[32];
		snprintf(name, sizeof(name), "%016" PRIx64 ".seg", s->next_id);
		int fd = openat(s->dir_fd, name,
				O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0 && errno == EEXIST) { /* not ours to touch: the next name */
			s->next_id++;
			continue;
		}
		if (fd < 0)
			return -errno;
		errno = ENOSPC;
		if (write(fd, SPOOL_MAGIC, MAGIC_LEN) != (ssize_t)MAGIC_LEN) {
			int r = -errno;
			close(fd);
			unlinkat(s->dir_fd, name, 0);
			return r;
		}
		struct spool_segment *g = segment_push(s, s->next_id, MAGIC_LEN);
		g->fd = fd;
		s->open = g;
		s->dir_dirty = true;
		return 0;
	}
	return -EEXIST;
}

/* The spool's own limit, told apart from the disk's. */
#define SPOOL_FULL (-E2BIG)

/* Appends a record to the open segment (closing it when full, making one
 * when there is none). 0, or -errno with nothing of it left behind. */
static int append(struct spool *s, char kind, uint64_t epoch, uint64_t seq, const char *payload, size_t len,
		  bool capped)
{
	if (!s->dir)
		return -ENOENT;
	uint64_t rec = SPOOL_HEADER_LEN + len + 1;
	if (s->open && s->open->size > MAGIC_LEN && s->open->size + rec > SPOOL_SEGMENT_MAX) {
		if (!s->open->unstarted) { /* closed; else its fd stays for spool_sync() */
			close(s->open->fd);
			s->open->fd = -1;
		}
		s->open = NULL;
	}
	if (capped && s->disk_bytes + rec + (s->open ? 0 : MAGIC_LEN) > SPOOL_DISK_MAX)
		return SPOOL_FULL;
	if (!s->open) {
		int r = segment_create(s);
		if (r < 0)
			return r;
	}
	struct spool_segment *g = s->open;
	char hdr[SPOOL_HEADER_LEN + 1];
	spool_record_header(hdr, kind, epoch, seq, payload, len);
	struct iovec iov[3] = {{hdr, SPOOL_HEADER_LEN}, {(void *)payload, len}, {"\n", 1}};
	ssize_t n;
	do
		n = writev(g->fd, iov, 3);
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)rec) {
		g->size += rec;
		g->end = g->size;
		s->disk_bytes += rec;
		if (kind == 'B') /* a done record lost to a power cut costs a resend only */
			g->unstarted = g->unsynced = true;
		return 0;
	}
	int r = n < 0 ? -errno : -ENOSPC;
	if (n > 0 && ftruncate(g->fd, (off_t)g->size) < 0) {
		/* A half record stays at its end: no more after it (the next
		 * start drops it as cut short). */
		log_error("flow spool: cutting a half record off %s/%016" PRIx64 ".seg: %m", s->dir, g->id);
		s->open = NULL;
	}
	return r;
}

static void append_failed(struct spool *s, int r, const char *what)
{
	if (r == -ENOENT || r == SPOOL_FULL)
		return;
	if (!s->failing) /* once, not once per batch */
		log_error(
		    "flow spool: appending %s to %s: %s; a crash would lose the batches that are not on disk",
		    what, s->dir, strerror(-r));
	s->failing = true;
}

static void append_worked(struct spool *s)
{
	if (s->failing)
		log_info("flow spool: %s is written again", s->dir);
	s->failing = false;
}

static struct spool_batch *batch_push(struct spool *s, uint64_t epoch, uint64_t seq, char *text, size_t len,
				      struct spool_segment *g)
{
	struct spool_batch *b = xcalloc(1, sizeof(*b));
	b->epoch = epoch;
	b->seq = seq;
	b->text = text;
	b->len = len;
	b->seg = g;
	if (s->tail)
		s->tail->next = b;
	else
		s->head = b;
	s->tail = b;
	s->mem_batches++;
	s->mem_bytes += len;
	if (!g)
		s->mem_only++;
	return b;
}

int spool_add(struct spool *s, uint64_t epoch, uint64_t seq, char *text, size_t len, unsigned flags)
{
	bool room = !s->backlog && s->mem_bytes + len <= SPOOL_MEM_MAX;
	int r = append(s, 'B', epoch, seq, text, len, !(flags & SPOOL_UNCAPPED));
	if (r == 0) {
		append_worked(s);
		struct spool_segment *g = s->open;
		g->pending++;
		if (room) {
			batch_push(s, epoch, seq, text, len, g);
			return 0;
		}
		if (!s->backlog++) { /* the first to wait on disk: read from here */
			s->cur = g;
			s->cur_off = g->size - (SPOOL_HEADER_LEN + len + 1);
		}
		g->unread++;
		s->to_disk++;
		free(text);
		return 0;
	}
	append_failed(s, r, "a batch");
	if (!room) {
		free(text);
		return -ENOSPC;
	}
	batch_push(s, epoch, seq, text, len, NULL); /* memory only, until the disk takes it */
	return 1;
}

struct spool_batch *spool_head(struct spool *s)
{
	return s->head;
}

struct spool_batch *spool_find(struct spool *s, uint64_t epoch, uint64_t seq)
{
	struct spool_batch *b = s->head;
	while (b && (b->epoch != epoch || b->seq != seq))
		b = b->next;
	return b;
}

static void reader_close(struct spool *s)
{
	if (s->rd_fd >= 0)
		close(s->rd_fd);
	s->rd_fd = -1;
	s->rd_seg = NULL;
}

/* Unlinks the oldest segments while every batch in them is done. */
static void segments_trim(struct spool *s)
{
	while (s->segs && !s->segs->pending) {
		struct spool_segment *g = s->segs;
		if (s->backlog && s->cur == g) { /* only done records left in it */
			s->cur = g->next;
			s->cur_off = MAGIC_LEN;
		}
		if (s->rd_seg == g)
			reader_close(s);
		if (s->open == g)
			s->open = NULL;
		if (g->fd >= 0)
			close(g->fd);
		char name[32];
		segment_name(g, name, sizeof(name));
		if (unlinkat(s->dir_fd, name, 0) < 0 && errno != ENOENT)
			log_error("flow spool: removing %s/%s: %m", s->dir, name);
		s->disk_bytes -= g->size;
		s->n_segs--;
		s->segs = g->next;
		if (!s->segs)
			s->last = NULL;
		free(g);
	}
}

void spool_done(struct spool *s, struct spool_batch *b)
{
	struct spool_batch **pp = &s->head, *prev = NULL;
	while (*pp && *pp != b)
		prev = *pp, pp = &(*pp)->next;
	if (!*pp)
		return;
	*pp = b->next;
	if (s->tail == b)
		s->tail = prev;
	s->mem_batches--;
	s->mem_bytes -= b->len;
	struct spool_segment *g = b->seg;
	if (!g) {
		s->mem_only--;
	} else {
		g->pending--;
		/* Said on disk, unless its whole segment goes now. */
		if (g != s->segs || g->pending) {
			int r = append(s, 'D', b->epoch, b->seq, "", 0, false);
			if (r < 0)
				append_failed(s, r, "an acknowledgement");
		}
		segments_trim(s);
	}
	free(b->text);
	free(b);
}

/* pread() of exactly len bytes: 0, or -errno (-EIO when short). */
static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		got += (size_t)n;
	}
	return 0;
}

/* What is left of the cursor's segment, as unreadable; the cursor skips it. */
static void skip_rest(struct spool *s, const char *what)
{
	struct spool_segment *g = s->cur;
	uint64_t len = g->end - s->cur_off;
	if (!g->from_start) { /* those were reported at start */
		size_t n = len > SPOOL_RECORD_MAX ? SPOOL_RECORD_MAX : (size_t)len;
		char *buf = xmalloc(n + 1);
		if (read_at(s->rd_fd, buf, n, s->cur_off) < 0)
			n = 0;
		bad(s, g, buf, n, what);
		free(buf);
	}
	s->cur_off = g->end;
}

void spool_refill(struct spool *s)
{
	uint64_t read = 0;
	while (s->backlog) {
		struct spool_segment *g = s->cur;
		if (s->cur_off >= g->end) {
			if (!g->next) { /* cannot be: counted batches are on disk */
				log_error("flow spool: %" PRIu64 " batch(es) not found on disk", s->backlog);
				s->backlog = 0;
				break;
			}
			s->cur = g->next;
			s->cur_off = MAGIC_LEN;
			continue;
		}
		if (s->rd_seg != g) {
			reader_close(s);
			char path[4096];
			snprintf(path, sizeof(path), "%s/%016" PRIx64 ".seg", s->dir, g->id);
			s->rd_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
			if (s->rd_fd < 0) {
				log_error("flow spool: reading %s: %m; %" PRIu64 " batch(es) in it are lost",
					  path, g->unread);
				/* They cannot come: the segment goes once the rest is done. */
				s->backlog -= g->unread;
				g->pending -= g->unread;
				g->unread = 0;
				s->cur_off = g->end;
				segments_trim(s);
				continue;
			}
			s->rd_seg = g;
		}
		char hdr[SPOOL_HEADER_LEN + 1] = {0};
		struct spool_record r;
		if (g->end - s->cur_off < SPOOL_HEADER_LEN ||
		    read_at(s->rd_fd, hdr, SPOOL_HEADER_LEN, s->cur_off) < 0 ||
		    spool_header_parse(hdr, &r) < 0) {
			skip_rest(s, "an unreadable record");
			continue;
		}
		uint64_t rec = SPOOL_HEADER_LEN + (uint64_t)r.len + 1;
		if (s->cur_off + rec > g->end) {
			skip_rest(s, "a record longer than its segment");
			continue;
		}
		if (r.kind == 'B' && s->head && s->mem_bytes + r.len > SPOOL_MEM_MAX)
			break; /* no room yet */
		if (read && read + rec > SPOOL_REFILL_MAX)
			break; /* the rest at the next call */
		char *tail = xmalloc((size_t)r.len + 1);
		if (read_at(s->rd_fd, tail, (size_t)r.len + 1, s->cur_off + SPOOL_HEADER_LEN) < 0 ||
		    tail[r.len] != '\n') {
			free(tail);
			skip_rest(s, "a record that does not end where it says");
			continue;
		}
		if (spool_record_check(&r, hdr, tail) < 0) { /* framed still: only this record */
			if (!g->from_start)		     /* (those were reported at start) */
				bad(s, g, tail, r.len, "a record with a wrong checksum");
			free(tail);
			s->cur_off += rec;
			continue;
		}
		s->cur_off += rec;
		read += rec;
		if (r.kind != 'B' || (g->from_start && done_has(s, r.epoch, r.seq))) {
			free(tail);
			continue;
		}
		tail[r.len] = '\0';
		if (!g->unread) { /* cannot be: only counted batches are read */
			free(tail);
			continue;
		}
		g->unread--;
		s->backlog--;
		batch_push(s, r.epoch, r.seq, tail, r.len, g);
	}
	if (!s->backlog)
		reader_close(s);
}

/* Batches the disk refused, once it takes them again: after every other,
 * and only while nothing waits on disk (which must all be older). */
static void retry_memory_only(struct spool *s)
{
	for (struct spool_batch *b = s->head; b && s->mem_only && !s->backlog; b = b->next) {
		if (b->seg)
			continue;
		int r = append(s, 'B', b->epoch, b->seq, b->text, b->len, true);
		if (r < 0)
			break;
		append_worked(s);
		b->seg = s->open;
		b->seg->pending++;
		s->mem_only--;
	}
}

void spool_sync(struct spool *s)
{
	if (!s->dir)
		return;
	retry_memory_only(s);
	for (struct spool_segment *g = s->segs; g; g = g->next) {
		if (g->fd < 0)
			continue;
		/* Writeback started, not waited for: the disk's time is not
		 * the loop's. */
		if (g->unstarted && sync_file_range(g->fd, 0, 0, SYNC_FILE_RANGE_WRITE) < 0)
			log_error("flow spool: writing %s/%016" PRIx64 ".seg back: %m", s->dir, g->id);
		g->unstarted = false;
		if (g != s->open) {
			close(g->fd);
			g->fd = -1;
		}
	}
}

void spool_stop(struct spool *s)
{
	if (!s || !s->dir)
		return;
	/* Memory only past the batches waiting on disk too: they come after
	 * those at the next start, out of their order, rather than never. */
	for (struct spool_batch *b = s->head; b && s->mem_only; b = b->next) {
		if (b->seg)
			continue;
		if (append(s, 'B', b->epoch, b->seq, b->text, b->len, true) < 0) {
			log_error("flow spool: %" PRIu64 " batch(es) the disk did not take are lost",
				  s->mem_only);
			break;
		}
		b->seg = s->open;
		b->seg->pending++;
		s->mem_only--;
	}
	spool_flush(s);
}

void spool_flush(struct spool *s)
{
	if (!s->dir)
		return;
	for (struct spool_segment *g = s->segs; g; g = g->next) {
		if (!g->unsynced)
			continue;
		char name[32];
		segment_name(g, name, sizeof(name));
		int fd = g->fd >= 0 ? g->fd : openat(s->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0 || fdatasync(fd) < 0)
			log_error("flow spool: syncing %s/%s: %m", s->dir, name);
		else
			g->unsynced = false;
		if (fd >= 0 && fd != g->fd)
			close(fd);
	}
	if (s->dir_dirty && fsync(s->dir_fd) == 0)
		s->dir_dirty = false;
}

void spool_free(struct spool *s)
{
	if (!s)
		return;
	while (s->head) {
		struct spool_batch *b = s->head;
		s->head = b->next;
		free(b->text);
		free(b);
	}
	while (s->segs) {
		struct spool_segment *g = s->segs;
		s->segs = g->next;
		if (g->fd >= 0)
			close(g->fd);
		free(g);
	}
	reader_close(s);
	if (s->dir_fd >= 0)
		close(s->dir_fd);
	free(s->done);
	free(s->dir);
	free(s);
}

void spool_counts(const struct spool *s, struct spool_counts *c)
{
	*c = (struct spool_counts){
	    .mem_batches = s->mem_batches,
	    .mem_bytes = s->mem_bytes,
	    .disk_batches = s->backlog,
	    .disk_bytes = s->disk_bytes,
	    .segments = s->n_segs,
	    .to_disk = s->to_disk,
	    .mem_only = s->mem_only,
	};
}

/* ---- start: what earlier runs left ---- */

struct scan_key {
	struct spool_segment *g;
	uint64_t epoch, seq;
};

struct scan {
	struct scan_key *keys; /* every whole batch record, in order */
	size_t n_keys, keys_cap;
	struct done_key *done;
	size_t n_done, done_cap;
};

static int id_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* The ids of DIR's segment files, sorted; malloc()ed. */
static uint64_t *segment_ids(DIR *d, size_t *n)
{
	uint64_t *ids = NULL;
	size_t cap = 0;
	*n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		uint64_t id;
		if (strlen(e->d_name) != 20 || strcmp(e->d_name + 16, ".seg") != 0 ||
		    !parse_hex(e->d_name, 16, '.', &id))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			ids = xrealloc(ids, cap * sizeof(*ids));
		}
		ids[(*n)++] = id;
	}
	if (*n)
		qsort(ids, *n, sizeof(*ids), id_cmp);
	return ids;
}

/* Reads one segment of an earlier run: its whole records into sc, what is
 * broken to the bad-record callback. */
static void scan_segment(struct spool *s, struct scan *sc, uint64_t id)
{
	char name[32];
	snprintf(name, sizeof(name), "%016" PRIx64 ".seg", id);
	int fd = openat(s->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_error("flow spool: reading %s/%s: %s; left alone", s->dir, name,
			  fd < 0 ? strerror(errno) : "not a file");
		if (fd >= 0)
			close(fd);
		if (id >= s->next_id)
			s->next_id = id + 1;
		return;
	}
	size_t size = (size_t)st.st_size < SEGMENT_READ_MAX ? (size_t)st.st_size : SEGMENT_READ_MAX;
	char *buf = xmalloc(size + 1);
	if (read_at(fd, buf, size, 0) < 0)
		size = 0;
	close(fd);
	if (size < MAGIC_LEN || memcmp(buf, SPOOL_MAGIC, MAGIC_LEN) != 0) {
		/* Another version's, or broken at its start: not ours to remove. */
		log_error("flow spool: %s/%s does not start as a segment of this version does; left alone",
			  s->dir, name);
		if (id >= s->next_id)
			s->next_id = id + 1;
		free(buf);
		return;
	}
	/* Its bytes all count against the spool's size until it goes. */
	struct spool_segment *g = segment_push(s, id, (uint64_t)st.st_size);
	g->from_start = true;
	size_t off = MAGIC_LEN;
	while (off < size) {
		struct spool_record r;
		const char *hdr = buf + off;
		if (size - off < SPOOL_HEADER_LEN) {
			log_info("flow spool: %s/%s: a record cut short at its end (a crash while writing) "
				 "is dropped",
				 s->dir, name);
			break;
		}
		if (spool_header_parse(hdr, &r) < 0) {
			bad(s, g, hdr, size - off, "an unreadable record");
			break;
		}
		size_t rec = SPOOL_HEADER_LEN + (size_t)r.len + 1;
		if (rec > size - off) {
			log_info("flow spool: %s/%s: a record cut short at its end (a crash while writing) "
				 "is dropped",
				 s->dir, name);
			break;
		}
		if (spool_record_check(&r, hdr, hdr + SPOOL_HEADER_LEN) < 0) {
			/* The frame holds (its '\n' is there): only this record. */
			bool framed = hdr[rec - 1] == '\n';
			bad(s, g, hdr, framed ? rec : size - off, "a record with a wrong checksum");
			if (!framed)
				break;
			off += rec;
			continue;
		}
		if (r.kind == 'D') {
			if (sc->n_done == sc->done_cap) {
				sc->done_cap = sc->done_cap ? sc->done_cap * 2 : 256;
				sc->done = xrealloc(sc->done, sc->done_cap * sizeof(*sc->done));
			}
			sc->done[sc->n_done++] = (struct done_key){r.epoch, r.seq};
		} else {
			if (sc->n_keys == sc->keys_cap) {
				sc->keys_cap = sc->keys_cap ? sc->keys_cap * 2 : 1024;
				sc->keys = xrealloc(sc->keys, sc->keys_cap * sizeof(*sc->keys));
			}
			sc->keys[sc->n_keys++] = (struct scan_key){g, r.epoch, r.seq};
		}
		off += rec;
	}
	g->end = off; /* the refill reads no further than this scan did */
	if ((size_t)st.st_size > size && size == SEGMENT_READ_MAX)
		log_error(
		    "flow spool: %s/%s is longer than a segment can be; what follows %zu bytes is ignored",
		    s->dir, name, size);
	free(buf);
}

static void spool_recover(struct spool *s)
{
	DIR *d = fdopendir(dup(s->dir_fd));
	if (!d) {
		log_error("flow spool: listing %s: %m", s->dir);
		return;
	}
	size_t n;
	uint64_t *ids = segment_ids(d, &n);
	closedir(d);
	struct scan sc = {0};
	for (size_t i = 0; i < n; i++)
		scan_segment(s, &sc, ids[i]);
	free(ids);
	if (sc.n_done) {
		qsort(sc.done, sc.n_done, sizeof(*sc.done), done_cmp);
		s->done = sc.done;
		s->n_done = sc.n_done;
	} else {
		free(sc.done);
	}
	for (size_t i = 0; i < sc.n_keys; i++) {
		if (done_has(s, sc.keys[i].epoch, sc.keys[i].seq))
			continue;
		sc.keys[i].g->pending++;
		sc.keys[i].g->unread++;
		s->backlog++;
	}
	free(sc.keys);
	if (s->backlog) {
		s->cur = s->segs;
		s->cur_off = MAGIC_LEN;
		log_info("flow spool: %" PRIu64 " unacknowledged batch(es) of an earlier run in %" PRIu64
			 " segment(s) go first",
			 s->backlog, s->n_segs);
	}
	segments_trim(s);
}

struct spool *spool_new(const char *state_dir, spool_bad_fn bad_fn, void *arg)
{
	struct spool *s = xcalloc(1, sizeof(*s));
	s->dir_fd = s->rd_fd = -1;
	s->bad = bad_fn;
	s->bad_arg = arg;
	s->next_id = 1;
	if (!state_dir)
		return s;
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", state_dir, SPOOL_DIR);
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		log_error("flow spool: making %s: %m; flow batches are kept in memory only", path);
		return s;
	}
	s->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (s->dir_fd < 0) {
		log_error("flow spool: opening %s: %m; flow batches are kept in memory only", path);
		return s;
	}
	s->dir = xstrdup(path);
	spool_recover(s);
	spool_refill(s);
	return s;
}
