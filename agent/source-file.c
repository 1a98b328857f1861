/* The inventory file as an endpoint source (source.h): --inventory FILE,
 * read at start and again whenever it changes (watch.h). A file that does
 * not validate is refused whole and the endpoints in force stay: a bad
 * edit must not unmanage them. */
#include <errno.h>
#include <stdlib.h>

#include "bulkhead/inventory.h"
#include "bulkhead/log.h"
#include "source.h"
#include "watch.h"

struct source_file {
	struct source src;
	char *path, *node;
	struct watch *watch;
};

static void source_file_read(struct source_file *f)
{
	struct diag d;
	diag_init(&d, f->path);
	struct inventory *inv = inventory_new();
	if (!inv)
		abort();
	if (inventory_load_file(inv, f->path, f->node, 0, &d) < 0 || inventory_finish(inv, &d) < 0) {
		log_error("inventory %s rejected; keeping the previous one:", f->path);
		diag_print(&d, stderr);
		diag_release(&d);
		inventory_free(inv);
		source_rejected(&f->src);
		return;
	}
	diag_release(&d);
	struct source_endpoint *v = xcalloc(inv->n ? inv->n : 1, sizeof(*v));
	size_t n_ports = 0;
	for (size_t i = 0; i < inv->n; i++)
		n_ports += inv->v[i].n_ports;
	struct source_port *ports = xcalloc(n_ports ? n_ports : 1, sizeof(*ports)), *p = ports;
	for (size_t i = 0; i < inv->n; i++) {
		const struct endpoint *ie = &inv->v[i];
		v[i] = (struct source_endpoint){.name = ie->name,
						.netns = ie->netns,
						.labels = &ie->labels,
						.addrs = ie->addrs,
						.n_addrs = ie->n_addrs,
						.ports = p,
						.n_ports = ie->n_ports};
		for (size_t k = 0; k < ie->n_ports; k++)
			*p++ = (struct source_port){ie->ports[k].name, ie->ports[k].proto, ie->ports[k].port};
	}
	source_set_all(&f->src, v, inv->n);
	free(ports);
	free(v);
	inventory_free(inv);
}

static void on_change(void *data)
{
	source_file_read(data);
}

static int source_file_start(struct source *s, struct loop *loop, bool once)
{
	struct source_file *f = (struct source_file *)s;
	source_file_read(f);
	if (once)
		return 0;
	return watch_new(loop, f->path, on_change, f, &f->watch);
}

static void source_file_free(struct source *s)
{
	struct source_file *f = (struct source_file *)s;
	watch_free(f->watch);
	free(f->path);
	free(f->node);
	free(f);
}

static const struct source_ops source_file_ops = {
    .kind = "file",
    .start = source_file_start,
    .free = source_file_free,
};

struct source *source_file_new(const char *path, const char *node)
{
	struct source_file *f = xcalloc(1, sizeof(*f));
	f->src.ops = &source_file_ops;
	f->path = xstrdup(path);
	f->node = xstrdup(node);
	return &f->src;
}
