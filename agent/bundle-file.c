/* --bundle FILE (see bundle-file.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead/fileio.h"
#include "bulkhead/log.h"
#include "bundle-file.h"
#include "state.h"
#include "watch.h"

struct bundle_file {
	char *path, *node;
	const struct bundle_intake *intake;
	void *core;
	struct watch *watch;
};

struct bundle *bundle_file_decode(const char *source, const char *node, char *text, size_t len)
{
	struct diag d;
	diag_init(&d, source);
	struct bundle *b = bundle_decode(text, len, &d);
	free(text);
	if (!b) {
		log_error("bundle %s rejected; keeping the one in force:", source);
		diag_print(&d, stderr);
	} else if (strcmp(b->node, node) != 0) {
		log_error("bundle %s is for node \"%s\", not \"%s\"; keeping the one in force", source,
			  b->node, node);
		bundle_free(b);
		b = NULL;
	}
	diag_release(&d);
	return b;
}

int bundle_file_read(struct bundle_file *f)
{
	char *text;
	size_t len;
	int r = state_read_path(f->path, BUNDLE_FILE_MAX_BYTES, &text, &len);
	if (r < 0) {
		log_error("reading bundle %s: %s; keeping the one in force", f->path, fileio_strerror(r));
		f->intake->rejected(f->core, BUNDLE_FROM_FILE, 0, NULL);
		return r;
	}
	struct bundle *b = bundle_file_decode(f->path, f->node, text, len);
	if (!b) {
		f->intake->rejected(f->core, BUNDLE_FROM_FILE, 0, NULL);
		return -EINVAL;
	}
	f->intake->take(f->core, BUNDLE_FROM_FILE, b, 0);
	return 0;
}

static void on_change(void *data)
{
	if (bundle_file_read(data) < 0)
		return; /* logged, and the core told */
}

int bundle_file_watch(struct bundle_file *f, struct loop *loop)
{
	return watch_new(loop, f->path, on_change, f, &f->watch);
}

struct bundle_file *bundle_file_new(const char *path, const char *node, const struct bundle_intake *intake,
				    void *core)
{
	struct bundle_file *f = xcalloc(1, sizeof(*f));
	f->path = xstrdup(path);
	f->node = xstrdup(node);
	f->intake = intake;
	f->core = core;
	return f;
}

void bundle_file_free(struct bundle_file *f)
{
	if (!f)
		return;
	watch_free(f->watch);
	free(f->path);
	free(f->node);
	free(f);
}
