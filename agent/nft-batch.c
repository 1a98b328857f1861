/* nft-batch: a plan (nft-plan.h) as one nftables transaction built with
 * libnftnl, and its sending with libmnl: the generation-id bracket, every
 * acknowledgement drained, and an error that names the object. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <netinet/in.h>

#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

#include "nft-addr.h"
#include "nft-batch.h"
#include "nft-elements.h"
#include "nft-plan.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

/* nft's datatype numbers for set keys (nftables src/datatype.h); nft list
 * needs them to print the elements. A concatenation's type is its fields'
 * types, 6 bits each. */
#define NFT_TYPE_IPADDR		 7
#define NFT_TYPE_IP6ADDR	 8
#define NFT_TYPE_INET_PROTOCOL	 12
#define NFT_TYPE_INET_SERVICE	 13
#define NFT_TYPE_MARK		 19
#define NFT_TYPE_BITS		 6
#define NFT_BYTEORDER_HOST	 1
#define NFT_BYTEORDER_BIG_ENDIAN 2

/* Batch pages as nft sizes them; one message must fit in the overrun. */
#define NFT_BATCH_PAGE	  (128 * 1024)
#define NFT_BATCH_OVERRUN (64 * 1024)
/* Receive buffer per expected acknowledgement (skb truesize, rounded up). */
#define NFT_ACK_TRUESIZE 1024
#define NFT_RECV_BUF	 16384

enum obj_kind {
	OBJ_BATCH,
	OBJ_TABLE,
	OBJ_SET,   /* index: plan set */
	OBJ_ELEMS, /* index: plan set; map: plan map */
	OBJ_MAP,   /* index: plan map */
	OBJ_CHAIN, /* index: plan chain */
	OBJ_RULE,  /* index: plan rule */
	OBJ_GONE,  /* index: nb->gone, a class chain or map a delta removes */
	OBJ_TAG,   /* the tag set, or its element */
};

/* What one message of the batch was; message i has sequence seq_base + i. */
struct nft_obj {
	enum obj_kind kind;
	uint32_t index;
	uint32_t first; /* OBJ_ELEMS: first element of the chunk */
	bool map;	/* OBJ_ELEMS: of a map */
	uint16_t nlmsg_type;
};

struct nft_batch {
	uint16_t nflog_group;
	enum nft_form form;
	struct nft_plan plan;
	struct nftnl_batch *batch;
	struct nft_obj *objs;
	size_t n_objs, cap_objs;
	uint32_t seq_base;
	size_t n_acks; /* messages that asked for an ACK */
	const char *zeroed_page;
	uint8_t *genid; /* NFNL_BATCH_GENID of BEGIN, big-endian: 0 until a send sets it */
	bool has_tag;
	struct nft_tag tag;
	/* The names of the class chains and maps a delta removes. */
	char (*gone)[NFT_NAME_MAX];
	size_t n_gone;
	struct nft_batch_stats stats;
	char error[1024];
};

void nft_batch_tune_malloc(void)
{
	/* Both: setting one stops glibc's own adjusting of the other. */
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	mallopt(M_MMAP_THRESHOLD, 16 << 20);
}

struct nft_batch *nft_batch_new(uint16_t nflog_group)
{
	struct nft_batch *nb = calloc(1, sizeof(*nb));

	if (!nb)
		return NULL;
	nb->nflog_group = nflog_group;
	nb->form = NFT_FORM_MAPS;
	return nb;
}

void nft_batch_set_form(struct nft_batch *nb, enum nft_form form)
{
	nb->form = form;
}

static void batch_reset(struct nft_batch *nb)
{
	nft_plan_release(&nb->plan);
	if (nb->batch)
		nftnl_batch_free(nb->batch);
	nb->batch = NULL;
	free(nb->objs);
	nb->objs = NULL;
	nb->n_objs = nb->cap_objs = 0;
	nb->n_acks = 0;
	nb->zeroed_page = NULL;
	nb->genid = NULL;
	free(nb->gone);
	nb->gone = NULL;
	nb->n_gone = 0;
	memset(&nb->stats, 0, sizeof(nb->stats));
	nb->error[0] = '\0';
}

void nft_batch_free(struct nft_batch *nb)
{
	if (!nb)
		return;
	batch_reset(nb);
	free(nb);
}

const char *nft_batch_error(const struct nft_batch *nb)
{
	return nb->error;
}

void nft_batch_stats(const struct nft_batch *nb, struct nft_batch_stats *out)
{
	*out = nb->stats;
}

void nft_batch_set_error(struct nft_batch *nb, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(nb->error, sizeof(nb->error), fmt, ap);
	va_end(ap);
}

void nft_batch_set_tag(struct nft_batch *nb, const struct nft_tag *t)
{
	nb->has_tag = t != NULL;
	if (t)
		nb->tag = *t;
}

int nft_batch_walk(const struct nft_batch *nb, nft_batch_msg_fn fn, void *arg)
{
	int n_iov = nftnl_batch_iovec_len(nb->batch);
	struct iovec *iov = calloc((size_t)n_iov, sizeof(*iov));

	if (!iov)
		return -ENOMEM;
	nftnl_batch_iovec(nb->batch, iov, (uint32_t)n_iov);
	for (int i = 0; i < n_iov; i++) {
		int left = (int)iov[i].iov_len;

		for (const struct nlmsghdr *nlh = iov[i].iov_base; mnl_nlmsg_ok(nlh, left);
		     nlh = mnl_nlmsg_next(nlh, &left)) {
			const struct nlmsghdr *next = nlh;
			int l2 = left;

			next = mnl_nlmsg_next(next, &l2);
			fn(arg, nlh, mnl_nlmsg_ok(next, l2) ? next : NULL);
		}
	}
	free(iov);
	return 0;
}

/* Reserves the next sequence number for an object of kind. */
static int batch_obj(struct nft_batch *nb, const struct nft_obj *o, uint32_t *seq)
{
	if (nb->n_objs == nb->cap_objs) {
		size_t cap = nb->cap_objs ? 2 * nb->cap_objs : 256;
		struct nft_obj *v = realloc(nb->objs, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		nb->objs = v;
		nb->cap_objs = cap;
	}
	nb->objs[nb->n_objs] = *o;
	*seq = nb->seq_base + (uint32_t)nb->n_objs;
	nb->n_objs++;
	return 0;
}

/* libnftnl leaves attribute padding as malloc() left it, and all of it
 * goes to the kernel: zero each page of the batch once, when we start
 * writing into it. A page is one buffer of NFT_BATCH_PAGE +
 * NFT_BATCH_OVERRUN bytes whose first nftnl_batch_buffer_len() are used. */
static char *batch_buffer(struct nft_batch *nb)
{
	char *cur = nftnl_batch_buffer(nb->batch);
	const char *page = cur - nftnl_batch_buffer_len(nb->batch);

	if (page != nb->zeroed_page) {
		memset(cur, 0, (size_t)(page + NFT_BATCH_PAGE + NFT_BATCH_OVERRUN - cur));
		nb->zeroed_page = page;
	}
	return cur;
}

static struct nlmsghdr *batch_hdr(struct nft_batch *nb, uint16_t type, uint16_t flags,
				  const struct nft_obj *o)
{
	struct nft_obj obj = *o;
	uint32_t seq;

	obj.nlmsg_type = type;
	if (batch_obj(nb, &obj, &seq) < 0)
		return NULL;
	nb->n_acks++;
	return nftnl_nlmsg_build_hdr(batch_buffer(nb), type, NFPROTO_INET, flags | NLM_F_ACK, seq);
}

/* Closes the message just written; a new page when this one is full. */
static int batch_next(struct nft_batch *nb)
{
	nb->stats.messages++;
	return nftnl_batch_update(nb->batch) < 0 ? -ENOMEM : 0;
}

static int emit_table(struct nft_batch *nb, uint16_t type, uint16_t flags)
{
	struct nft_obj o = {.kind = OBJ_TABLE};
	struct nftnl_table *t = nftnl_table_alloc();
	struct nlmsghdr *nlh;

	if (!t)
		return -ENOMEM;
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, NFT_TABLE_NAME);
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
	nlh = batch_hdr(nb, type, flags, &o);
	if (!nlh) {
		nftnl_table_free(t);
		return -ENOMEM;
	}
	nftnl_table_nlmsg_build_payload(nlh, t);
	nftnl_table_free(t);
	return batch_next(nb);
}

/* A set or map by name, as the head of an element message or of NEWSET.
 * id (NFTA_SET_ID): one created in this same transaction; 0: one that
 * exists already, by name alone. */
static struct nftnl_set *set_named(const char *name, uint32_t id)
{
	struct nftnl_set *s = nftnl_set_alloc();

	if (!s)
		return NULL;
	nftnl_set_set_str(s, NFTNL_SET_TABLE, NFT_TABLE_NAME);
	nftnl_set_set_str(s, NFTNL_SET_NAME, name);
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
	if (id)
		nftnl_set_set_u32(s, NFTNL_SET_ID, id);
	return s;
}

static const char *dest_name(const struct nft_elem_dest *d)
{
	return d->set ? d->set->name : d->map->name;
}

/* Elements on their way into NEWSETELEM or DELSETELEM messages, one set
 * and one kind at a time, written straight into the batch: a table of
 * 200,000 members is 200,000 elements, and libnftnl's element objects
 * (an allocation and a copy of the chain name each, a list, a free) cost
 * more than the kernel's parsing of them. The attributes are libnftnl's,
 * each element one NFTA_LIST_ELEM nest. */
struct elem_writer {
	struct nft_batch *nb;
	struct nft_elem_dest dest; /* none yet: both NULL */
	uint16_t type;		   /* NFT_MSG_NEWSETELEM or NFT_MSG_DELSETELEM */
	bool with_id;		   /* the set is created in this transaction */
	struct nlmsghdr *nlh;	   /* the message being written; NULL: none */
	struct nlattr *list;	   /* its NFTA_SET_ELEM_LIST_ELEMENTS */
	uint32_t in_chunk;	   /* elements in it */
	uint32_t done;		   /* elements already in messages */
};

/* A message ends past this many bytes (at an interval's end): the element
 * list is one attribute, whose length is 16 bits, and a message must fit
 * in a batch page's overrun. */
#define NFT_ELEMS_MSG_BYTES 48000

static int elem_writer_flush(struct elem_writer *w)
{
	int ret;

	if (!w->nlh)
		return 0;
	mnl_attr_nest_end(w->nlh, w->list);
	ret = batch_next(w->nb);
	if (ret < 0)
		return ret;
	if (w->type == NFT_MSG_DELSETELEM)
		w->nb->stats.elements_removed += w->in_chunk;
	else
		w->nb->stats.elements_added += w->in_chunk;
	w->nb->stats.elements += w->in_chunk;
	w->done += w->in_chunk;
	w->in_chunk = 0;
	w->nlh = NULL;
	return 0;
}

/* A message is written in place: nothing to drop after an error (the
 * batch is not sent then). */
static void elem_writer_release(struct elem_writer *w)
{
	w->nlh = NULL;
}

/* The messages of the set and kind written so far are complete. */
static int elem_writer_end(struct elem_writer *w)
{
	return elem_writer_flush(w);
}

static int elem_writer_start(struct elem_writer *w)
{
	const struct nft_plan *p = &w->nb->plan;
	const struct nft_elem_dest *d = &w->dest;
	struct nft_obj o = {.first = w->done, .kind = OBJ_ELEMS, .map = d->map != NULL};
	uint32_t id = !w->with_id ? 0 : d->set ? d->set->id : d->map->id;

	o.index = (uint32_t)(d->map ? d->map - p->maps : d->set - p->sets);
	/* Additions may create; deletions of what is not there fail, which
	 * says the table is not what we think it is (see nft.h). */
	w->nlh = batch_hdr(w->nb, w->type, w->type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0, &o);
	if (!w->nlh)
		return -ENOMEM;
	mnl_attr_put_strz(w->nlh, NFTA_SET_ELEM_LIST_TABLE, NFT_TABLE_NAME);
	mnl_attr_put_strz(w->nlh, NFTA_SET_ELEM_LIST_SET, dest_name(d));
	if (id)
		mnl_attr_put_u32(w->nlh, NFTA_SET_ELEM_LIST_SET_ID, htonl(id));
	w->list = mnl_attr_nest_start(w->nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
	return 0;
}

static void put_data(struct nlmsghdr *nlh, uint16_t type, const void *data, unsigned len)
{
	struct nlattr *nest = mnl_attr_nest_start(nlh, type);

	mnl_attr_put(nlh, NFTA_DATA_VALUE, len, data);
	mnl_attr_nest_end(nlh, nest);
}

/* nft_elem_fn: one element into the current message; a new set or kind
 * closes the messages of the one before. */
static int elem_writer_put(void *arg, const struct nft_elem_dest *dest, bool add, const struct nft_elem *e)
{
	struct elem_writer *w = arg;
	uint16_t type = add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM;
	struct nlattr *el;
	int ret;

	if (dest->set != w->dest.set || dest->map != w->dest.map || type != w->type) {
		ret = elem_writer_end(w);
		if (ret < 0)
			return ret;
		w->dest = *dest;
		w->type = type;
		w->done = 0;
	}
	if (!w->nlh && (ret = elem_writer_start(w)) < 0)
		return ret;
	el = mnl_attr_nest_start(w->nlh, NFTA_LIST_ELEM);
	if (e->end)
		mnl_attr_put_u32(w->nlh, NFTA_SET_ELEM_FLAGS, htonl(NFT_SET_ELEM_INTERVAL_END));
	put_data(w->nlh, NFTA_SET_ELEM_KEY, e->key, e->key_len);
	if (e->key_end)
		put_data(w->nlh, NFTA_SET_ELEM_KEY_END, e->key_end, e->key_len);
	if (e->chain) {
		struct nlattr *data = mnl_attr_nest_start(w->nlh, NFTA_SET_ELEM_DATA);
		struct nlattr *v = mnl_attr_nest_start(w->nlh, NFTA_DATA_VERDICT);

		mnl_attr_put_u32(w->nlh, NFTA_VERDICT_CODE, htonl((uint32_t)NFT_GOTO));
		mnl_attr_put_strz(w->nlh, NFTA_VERDICT_CHAIN, e->chain);
		mnl_attr_nest_end(w->nlh, v);
		mnl_attr_nest_end(w->nlh, data);
	}
	if (e->top && add) {
		/* Tells nft list that the interval runs to the top of the
		 * address space, where no end element can follow (as nft
		 * marks it): one userdata TLV, a u32 in host order. */
		uint32_t flag = NFTNL_SET_ELEM_F_INTERVAL_OPEN;
		uint8_t ud[2 + sizeof(flag)] = {NFTNL_UDATA_SET_ELEM_FLAGS, sizeof(flag)};

		memcpy(ud + 2, &flag, sizeof(flag));
		mnl_attr_put(w->nlh, NFTA_SET_ELEM_USERDATA, sizeof(ud), ud);
	}
	mnl_attr_nest_end(w->nlh, el);
	w->in_chunk++;
	/* An interval's end goes into its start's message, so that the
	 * kernel never sees half an interval. */
	if (w->nlh->nlmsg_len >= NFT_ELEMS_MSG_BYTES && !e->more)
		return elem_writer_flush(w);
	return 0;
}

/* Every element of a set or map created in this transaction. */
static int emit_elems(struct nft_batch *nb, const struct nft_elem_dest *dest)
{
	struct elem_writer w = {.nb = nb, .with_id = true};
	int ret = nft_elements_all(&nb->plan, dest, elem_writer_put, &w);

	if (ret == 0)
		return elem_writer_end(&w);
	elem_writer_release(&w);
	return ret;
}

/* NEWSET of s with the userdata ud (len bytes). */
static int emit_newset(struct nft_batch *nb, struct nftnl_set *s, const struct nft_obj *o)
{
	struct nlmsghdr *nlh = batch_hdr(nb, NFT_MSG_NEWSET, NLM_F_CREATE, o);

	if (!nlh) {
		nftnl_set_free(s);
		return -ENOMEM;
	}
	nftnl_set_nlmsg_build_payload(nlh, s);
	nftnl_set_free(s);
	nb->stats.sets++;
	return batch_next(nb);
}

/* A named set as nft -f makes it from `type ipv4_addr . inet_service`
 * (its userdata too: the key's byte order, none for a concatenation, and
 * the fields' types, inet_service last, so that nft lists it the same):
 * a hash, no interval, so no field lengths either. */
static int emit_named_set(struct nft_batch *nb, uint32_t set_index)
{
	static const uint8_t named_udata[] = {0, 4, 0, 0, 0, 0, 3, 8, 0, 4, 13, 0, 0, 0, 1, 0};
	const struct nft_plan_set *ps = &nb->plan.sets[set_index];
	struct nft_obj o = {.kind = OBJ_SET, .index = set_index};
	struct nftnl_set *s = set_named(ps->name, ps->id);

	if (!s)
		return -ENOMEM;
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE,
			  (ps->family == AF_INET ? NFT_TYPE_IPADDR : NFT_TYPE_IP6ADDR) << NFT_TYPE_BITS |
			      NFT_TYPE_INET_SERVICE);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, nft_plan_named_key_len(ps->family));
	nftnl_set_set_u32(s, NFTNL_SET_FLAGS, 0);
	nftnl_set_set_data(s, NFTNL_SET_USERDATA, named_udata, sizeof(named_udata));
	if (ps->size)
		nftnl_set_set_u32(s, NFTNL_SET_DESC_SIZE, ps->size);
	return emit_newset(nb, s, &o);
}

static int emit_set(struct nft_batch *nb, uint32_t set_index)
{
	const struct nft_plan_set *ps = &nb->plan.sets[set_index];
	struct nft_obj o = {.kind = OBJ_SET, .index = set_index};
	struct nftnl_udata_buf *ud;
	struct nftnl_set *s;

	if (ps->named)
		return emit_named_set(nb, set_index);
	s = set_named(ps->name, ps->id);
	ud = nftnl_udata_buf_alloc(64);
	if (!s || !ud || !nftnl_udata_put_u32(ud, NFTNL_UDATA_SET_KEYBYTEORDER, NFT_BYTEORDER_BIG_ENDIAN)) {
		nftnl_udata_buf_free(ud);
		if (s)
			nftnl_set_free(s);
		return -ENOMEM;
	}
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, ps->family == AF_INET ? NFT_TYPE_IPADDR : NFT_TYPE_IP6ADDR);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, nft_addr_len(ps->family));
	nftnl_set_set_u32(s, NFTNL_SET_FLAGS, ps->interval ? NFT_SET_INTERVAL : 0);
	nftnl_set_set_data(s, NFTNL_SET_USERDATA, nftnl_udata_buf_data(ud), nftnl_udata_buf_len(ud));
	nftnl_udata_buf_free(ud);
	if (ps->size)
		nftnl_set_set_u32(s, NFTNL_SET_DESC_SIZE, ps->size);
	return emit_newset(nb, s, &o);
}

/* A map as nft -f makes it from `type ... : verdict` (its userdata too,
 * so that nft lists it the same): an address map's key is big-endian; a
 * protocol and port map's is a concatenation of a 1-byte and a 2-byte
 * field. */
static int emit_map(struct nft_batch *nb, uint32_t map_index)
{
	/* nft's: the key's byte order (host, for the concatenation), the
	 * data's, the fields' types (inet_service last), and "data is no
	 * interval". */
	static const uint8_t concat_udata[] = {0, 4, 0,	 0, 0, 0, 1, 4, 0, 0, 0, 0, 3, 8,
					       0, 4, 13, 0, 0, 0, 1, 0, 6, 4, 0, 0, 0, 0};
	static const uint8_t field_len[] = {1, 2};
	const struct nft_plan_map *m = &nb->plan.maps[map_index];
	struct nft_obj o = {.kind = OBJ_MAP, .index = map_index};
	bool addr = m->kind == NFT_MAP_HOSTS || m->kind == NFT_MAP_RANGES;
	struct nftnl_udata_buf *ud = NULL;
	struct nftnl_set *s = set_named(m->name, m->id);

	if (!s)
		return -ENOMEM;
	nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
	nftnl_set_set_u32(s, NFTNL_SET_DATA_LEN, 0);
	if (addr) {
		ud = nftnl_udata_buf_alloc(64);
		if (!ud || !nftnl_udata_put_u32(ud, NFTNL_UDATA_SET_KEYBYTEORDER, NFT_BYTEORDER_BIG_ENDIAN) ||
		    !nftnl_udata_put_u32(ud, NFTNL_UDATA_SET_DATABYTEORDER, 0) ||
		    !nftnl_udata_put_u32(ud, NFTNL_UDATA_SET_DATA_INTERVAL, 0)) {
			nftnl_udata_buf_free(ud);
			nftnl_set_free(s);
			return -ENOMEM;
		}
		nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE,
				  m->family == AF_INET ? NFT_TYPE_IPADDR : NFT_TYPE_IP6ADDR);
		nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, nft_addr_len(m->family));
		nftnl_set_set_u32(s, NFTNL_SET_FLAGS,
				  NFT_SET_MAP | (m->kind == NFT_MAP_RANGES ? NFT_SET_INTERVAL : 0));
		nftnl_set_set_data(s, NFTNL_SET_USERDATA, nftnl_udata_buf_data(ud), nftnl_udata_buf_len(ud));
		nftnl_udata_buf_free(ud);
		if (m->size)
			nftnl_set_set_u32(s, NFTNL_SET_DESC_SIZE, m->size);
	} else {
		nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE,
				  NFT_TYPE_INET_PROTOCOL << NFT_TYPE_BITS | NFT_TYPE_INET_SERVICE);
		nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, 8);
		nftnl_set_set_u32(s, NFTNL_SET_FLAGS, NFT_SET_MAP | NFT_SET_INTERVAL | NFT_SET_CONCAT);
		nftnl_set_set_data(s, NFTNL_SET_DESC_CONCAT, field_len, sizeof(field_len));
		nftnl_set_set_data(s, NFTNL_SET_USERDATA, concat_udata, sizeof(concat_udata));
	}
	return emit_newset(nb, s, &o);
}

/* The tag set's one element, and the NFTA_SET_ID of the set when the
 * transaction creates it (plan sets and maps count from 1). */
static const uint8_t tag_key[4] = {0, 0, 0, 1}; /* 0x00000001 as nft lists it */
#define NFT_TAG_SET_ID UINT32_MAX

static struct nftnl_set *tag_set_alloc(bool created)
{
	return set_named(NFT_TAG_SET, created ? NFT_TAG_SET_ID : 0);
}

/* The tag (nft.h): with created, the set and its element in a table this
 * transaction makes; otherwise the element of the existing set replaced
 * (a DELSETELEM without elements flushes the set). Not counted in the
 * stats, which describe the bundle's ruleset. */
static int emit_tag(struct nft_batch *nb, bool created)
{
	struct nft_obj o = {.kind = OBJ_TAG};
	struct nftnl_set *s;
	struct nftnl_set_elem *e;
	struct nftnl_udata_buf *ud;
	struct nlmsghdr *nlh;
	int ret;

	if (!nb->plan.has_tag)
		return 0;
	s = tag_set_alloc(created);
	if (!s)
		return -ENOMEM;
	if (created) {
		nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, NFT_TYPE_MARK);
		nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, sizeof(tag_key));
		nlh = batch_hdr(nb, NFT_MSG_NEWSET, NLM_F_CREATE, &o);
		if (nlh)
			nftnl_set_nlmsg_build_payload(nlh, s);
	} else {
		nlh = batch_hdr(nb, NFT_MSG_DELSETELEM, 0, &o);
		if (nlh)
			nftnl_set_elems_nlmsg_build_payload(nlh, s);
	}
	nftnl_set_free(s);
	if (!nlh || (ret = batch_next(nb)) < 0)
		return -ENOMEM;

	s = tag_set_alloc(created);
	e = nftnl_set_elem_alloc();
	ud = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);
	if (!s || !e || !ud || !nftnl_udata_put_strz(ud, NFTNL_UDATA_SET_ELEM_COMMENT, nb->plan.tag)) {
		ret = -ENOMEM;
		goto err_free;
	}
	nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, tag_key, sizeof(tag_key));
	nftnl_set_elem_set(e, NFTNL_SET_ELEM_USERDATA, nftnl_udata_buf_data(ud), nftnl_udata_buf_len(ud));
	nftnl_set_elem_add(s, e);
	e = NULL;
	nlh = batch_hdr(nb, NFT_MSG_NEWSETELEM, NLM_F_CREATE, &o);
	if (!nlh) {
		ret = -ENOMEM;
		goto err_free;
	}
	nftnl_set_elems_nlmsg_build_payload(nlh, s);
	ret = batch_next(nb);
err_free:
	nftnl_udata_buf_free(ud);
	if (e)
		nftnl_set_elem_free(e);
	if (s)
		nftnl_set_free(s);
	return ret;
}

static struct nftnl_chain *chain_named(const char *name)
{
	struct nftnl_chain *c = nftnl_chain_alloc();

	if (!c)
		return NULL;
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, NFT_TABLE_NAME);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
	return c;
}

/* NEWCHAIN or DELCHAIN of c. */
static int emit_chain_msg(struct nft_batch *nb, struct nftnl_chain *c, uint16_t type, uint16_t flags,
			  const struct nft_obj *o)
{
	struct nlmsghdr *nlh = batch_hdr(nb, type, flags, o);

	if (!nlh) {
		nftnl_chain_free(c);
		return -ENOMEM;
	}
	nftnl_chain_nlmsg_build_payload(nlh, c);
	nftnl_chain_free(c);
	if (type == NFT_MSG_NEWCHAIN)
		nb->stats.chains++;
	return batch_next(nb);
}

static int emit_chain(struct nft_batch *nb, uint32_t index)
{
	const struct nft_plan_chain *pc = &nb->plan.chains[index];
	struct nft_obj o = {.kind = OBJ_CHAIN, .index = index};
	struct nftnl_chain *c = chain_named(pc->name);

	if (!c)
		return -ENOMEM;
	if (pc->kind == NFT_PLAN_BASE_CHAIN) {
		nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, "filter");
		nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM,
				    pc->dir == DIR_INGRESS ? NF_INET_LOCAL_IN : NF_INET_LOCAL_OUT);
		nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, 0);
		/* Drops come from the chain's own fallback rule, which logs them. */
		nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	}
	return emit_chain_msg(nb, c, NFT_MSG_NEWCHAIN, NLM_F_CREATE, &o);
}

/* Expression helpers: each returns false on ENOMEM. */
static bool add_expr(struct nftnl_rule *r, struct nftnl_expr *e)
{
	if (!e)
		return false;
	nftnl_rule_add_expr(r, e);
	return true;
}

static bool add_meta(struct nftnl_rule *r, uint32_t key, uint32_t reg)
{
	struct nftnl_expr *e = nftnl_expr_alloc("meta");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
		nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, reg);
	}
	return add_expr(r, e);
}

static bool add_payload_to(struct nftnl_rule *r, uint32_t base, uint32_t offset, uint32_t len, uint32_t reg)
{
	struct nftnl_expr *e = nftnl_expr_alloc("payload");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, reg);
	}
	return add_expr(r, e);
}

static bool add_payload(struct nftnl_rule *r, uint32_t base, uint32_t offset, uint32_t len)
{
	return add_payload_to(r, base, offset, len, NFT_REG_1);
}

static bool add_cmp(struct nftnl_rule *r, uint32_t op, const void *data, uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("cmp");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
		nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
		nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
	}
	return add_expr(r, e);
}

static bool add_cmp_u8(struct nftnl_rule *r, uint8_t v)
{
	return add_cmp(r, NFT_CMP_EQ, &v, sizeof(v));
}

/* ct KEY & mask, compared with 0 by op: the ct state and ct status
 * matches. */
static bool add_ct_masked(struct nftnl_rule *r, uint32_t key, uint32_t mask, uint32_t op)
{
	struct nftnl_expr *ct = nftnl_expr_alloc("ct");
	struct nftnl_expr *bw;
	uint32_t zero = 0;

	if (ct) {
		nftnl_expr_set_u32(ct, NFTNL_EXPR_CT_KEY, key);
		nftnl_expr_set_u32(ct, NFTNL_EXPR_CT_DREG, NFT_REG_1);
	}
	if (!add_expr(r, ct))
		return false;
	bw = nftnl_expr_alloc("bitwise");
	if (bw) {
		nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
		nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
		nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_LEN, sizeof(uint32_t));
		nftnl_expr_set(bw, NFTNL_EXPR_BITWISE_MASK, &mask, sizeof(mask));
		nftnl_expr_set(bw, NFTNL_EXPR_BITWISE_XOR, &zero, sizeof(zero));
	}
	return add_expr(r, bw) && add_cmp(r, op, &zero, sizeof(zero));
}

/* ct state & mask != 0 */
static bool add_ct_state(struct nftnl_rule *r, uint32_t mask)
{
	return add_ct_masked(r, NFT_CT_STATE, mask, NFT_CMP_NEQ);
}

/* reg1 = reg1 & mask (one byte), as nft emits a flags mask. */
static bool add_mask_u8(struct nftnl_rule *r, uint8_t mask)
{
	struct nftnl_expr *bw = nftnl_expr_alloc("bitwise");
	uint8_t zero = 0;

	if (bw) {
		nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
		nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
		nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_LEN, 1);
		nftnl_expr_set(bw, NFTNL_EXPR_BITWISE_MASK, &mask, 1);
		nftnl_expr_set(bw, NFTNL_EXPR_BITWISE_XOR, &zero, 1);
	}
	return add_expr(r, bw);
}

/* lookup of the key in reg 1 in the set name (id: created in this
 * transaction); a map's answer is the verdict. */
static bool add_lookup(struct nftnl_rule *r, const char *name, uint32_t id, bool map)
{
	struct nftnl_expr *e = nftnl_expr_alloc("lookup");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
		nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, name);
		if (id)
			nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, id);
		if (map)
			nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_VERDICT);
	}
	return add_expr(r, e);
}

static bool add_counter(struct nftnl_rule *r)
{
	return add_expr(r, nftnl_expr_alloc("counter"));
}

/* "ct status ! confirmed": the packet's conntrack entry is not confirmed
 * yet, so this is the first packet of its connection this hook sees
 * (conntrack confirms an entry when its first packet leaves the last hook);
 * no entry at all (untracked) does not match. */
static bool add_ct_unconfirmed(struct nftnl_rule *r)
{
	return add_ct_masked(r, NFT_CT_STATUS, IPS_CONFIRMED, NFT_CMP_EQ);
}

static bool add_log(struct nftnl_rule *r, const char *prefix, uint16_t group)
{
	struct nftnl_expr *e = nftnl_expr_alloc("log");

	if (e) {
		nftnl_expr_set_str(e, NFTNL_EXPR_LOG_PREFIX, prefix);
		nftnl_expr_set_u16(e, NFTNL_EXPR_LOG_GROUP, group);
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOG_SNAPLEN, NFT_NFLOG_SNAPLEN);
	}
	return add_expr(r, e);
}

static bool add_verdict(struct nftnl_rule *r, int verdict)
{
	struct nftnl_expr *e = nftnl_expr_alloc("immediate");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
		nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)verdict);
	}
	return add_expr(r, e);
}

static bool add_goto(struct nftnl_rule *r, const char *chain)
{
	struct nftnl_expr *e = nftnl_expr_alloc("immediate");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
		nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)NFT_GOTO);
		nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
	}
	return add_expr(r, e);
}

/* Transport protocol, then its destination port range or ICMP type/code,
 * as nft itself would emit them. */
static bool add_port(struct nftnl_rule *r, const struct port_match *pm)
{
	if (!add_meta(r, NFT_META_L4PROTO, NFT_REG_1) || !add_cmp_u8(r, pm->proto))
		return false;
	if (pm->proto == IPPROTO_ICMP || pm->proto == IPPROTO_ICMPV6) {
		if (pm->icmp_type >= 0 && pm->icmp_code >= 0) {
			uint8_t tc[2] = {(uint8_t)pm->icmp_type, (uint8_t)pm->icmp_code};

			return add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2) &&
			       add_cmp(r, NFT_CMP_EQ, tc, sizeof(tc));
		}
		if (pm->icmp_type >= 0)
			return add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1) &&
			       add_cmp_u8(r, (uint8_t)pm->icmp_type);
		if (pm->icmp_code >= 0)
			return add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 1, 1) &&
			       add_cmp_u8(r, (uint8_t)pm->icmp_code);
		return true;
	}
	if (pm->lo == 0 && pm->hi == 65535)
		return true;
	/* Ports compare as big-endian bytes, as on the wire. */
	uint16_t lo = htons(pm->lo), hi = htons(pm->hi);

	if (!add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2))
		return false;
	if (pm->lo == pm->hi)
		return add_cmp(r, NFT_CMP_EQ, &lo, sizeof(lo));
	return add_cmp(r, NFT_CMP_GTE, &lo, sizeof(lo)) && add_cmp(r, NFT_CMP_LTE, &hi, sizeof(hi));
}

static struct nftnl_rule *rule_alloc(const char *chain, const char *comment)
{
	struct nftnl_rule *r = nftnl_rule_alloc();

	if (!r)
		return NULL;
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, NFT_TABLE_NAME);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
	if (comment) {
		struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);

		if (!ud || !nftnl_udata_put_strz(ud, NFTNL_UDATA_RULE_COMMENT, comment)) {
			nftnl_udata_buf_free(ud);
			nftnl_rule_free(r);
			return NULL;
		}
		nftnl_rule_set_data(r, NFTNL_RULE_USERDATA, nftnl_udata_buf_data(ud),
				    nftnl_udata_buf_len(ud));
		nftnl_udata_buf_free(ud);
	}
	return r;
}

/* What a fixed rule matches (nft_plan_fixed_match() says it in nft's words). */
static bool add_fixed_match(struct nftnl_rule *r, const struct nft_plan_rule *pr)
{
	uint32_t lo_ifindex = 1;	  /* the loopback device is ifindex 1 in every netns */
	uint8_t nd_lo = 133, nd_hi = 136; /* router solicitation .. neighbour advert */

	switch (pr->fixed) {
	case FIXED_ESTABLISHED:
		return add_ct_state(r, NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED));
	case FIXED_CT_INVALID:
		return add_ct_state(r, NF_CT_STATE_INVALID_BIT);
	case FIXED_LOOPBACK:
		return add_meta(r, pr->dir == DIR_INGRESS ? NFT_META_IIF : NFT_META_OIF, NFT_REG_1) &&
		       add_cmp(r, NFT_CMP_EQ, &lo_ifindex, sizeof(lo_ifindex));
	case FIXED_TCP_PICKUP: {
		/* ct state new, TCP, and of FIN SYN RST ACK not SYN alone */
		uint8_t fsra = 0x01 | 0x02 | 0x04 | 0x10, syn = 0x02;

		return add_ct_state(r, NF_CT_STATE_BIT(IP_CT_NEW)) &&
		       add_meta(r, NFT_META_L4PROTO, NFT_REG_1) && add_cmp_u8(r, IPPROTO_TCP) &&
		       add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 13, 1) && add_mask_u8(r, fsra) &&
		       add_cmp(r, NFT_CMP_NEQ, &syn, 1);
	}
	case FIXED_NEIGHBOUR_DISCOVERY:
	default:
		/* IPv6 only, as the reference evaluator has it. */
		return add_meta(r, NFT_META_NFPROTO, NFT_REG_1) && add_cmp_u8(r, NFPROTO_IPV6) &&
		       add_meta(r, NFT_META_L4PROTO, NFT_REG_1) && add_cmp_u8(r, IPPROTO_ICMPV6) &&
		       add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1) &&
		       add_cmp(r, NFT_CMP_GTE, &nd_lo, 1) && add_cmp(r, NFT_CMP_LTE, &nd_hi, 1);
	}
}

/* The peer address of a rule's family into reg 1, behind the family
 * check nft adds itself (raw libnftnl must, or the address would be read
 * from the wrong header). */
static bool add_peer(struct nftnl_rule *r, int family, enum direction dir)
{
	bool v4 = family == AF_INET, src = dir == DIR_INGRESS;
	uint32_t off = v4 ? (src ? 12 : 16) : (src ? 8 : 24);

	return add_meta(r, NFT_META_NFPROTO, NFT_REG_1) && add_cmp_u8(r, v4 ? NFPROTO_IPV4 : NFPROTO_IPV6) &&
	       add_payload(r, NFT_PAYLOAD_NETWORK_HEADER, off, v4 ? 4 : 16);
}

/* `ip daddr . tcp dport @named` as nft emits it (after its family check:
 * the rule's own): the protocol, the address in reg 1, the port in the
 * register after the address (reg 9 after 4 bytes, reg 2 after 16). */
static bool add_named(struct nftnl_rule *r, const struct nft_plan_rule *pr)
{
	bool v4 = pr->family == AF_INET;

	return add_meta(r, NFT_META_L4PROTO, NFT_REG_1) && add_cmp_u8(r, pr->port->proto) &&
	       add_payload(r, NFT_PAYLOAD_NETWORK_HEADER, v4 ? 16 : 24, v4 ? 4 : 16) &&
	       add_payload_to(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, v4 ? NFT_REG32_01 : NFT_REG_2) &&
	       add_lookup(r, pr->named->name, pr->named->id, false);
}

/* What a rule of the bundle or a fallback matches: family, peer, port. */
static bool add_match(struct nftnl_rule *r, const struct nft_plan_rule *pr)
{
	bool ok = true;

	if (pr->family && !pr->set)
		ok = add_meta(r, NFT_META_NFPROTO, NFT_REG_1) &&
		     add_cmp_u8(r, pr->family == AF_INET ? NFPROTO_IPV4 : NFPROTO_IPV6);
	if (ok && pr->set)
		ok = add_peer(r, pr->family, pr->dir) && add_lookup(r, pr->set->name, pr->set->id, false);
	if (ok && pr->named)
		ok = add_named(r, pr);
	else if (ok && pr->port)
		ok = add_port(r, pr->port);
	return ok;
}

/* meta l4proto . th dport (or th sport: ICMP's type and code) vmap @map,
 * as nft emits it: the protocol in reg 1, the 2 bytes in reg 9 (the next
 * 4-byte register). nft's byteorder on the 1-byte protocol changes
 * nothing; it is there so that nft lists the rule as it lists its own. */
static bool add_proto_lookup(struct nftnl_rule *r, const struct nft_plan_map *m)
{
	struct nftnl_expr *bo;

	if (!add_meta(r, NFT_META_L4PROTO, NFT_REG_1))
		return false;
	bo = nftnl_expr_alloc("byteorder");
	if (bo) {
		nftnl_expr_set_u32(bo, NFTNL_EXPR_BYTEORDER_SREG, NFT_REG_1);
		nftnl_expr_set_u32(bo, NFTNL_EXPR_BYTEORDER_DREG, NFT_REG_1);
		nftnl_expr_set_u32(bo, NFTNL_EXPR_BYTEORDER_OP, NFT_BYTEORDER_HTON);
		nftnl_expr_set_u32(bo, NFTNL_EXPR_BYTEORDER_LEN, 1);
		nftnl_expr_set_u32(bo, NFTNL_EXPR_BYTEORDER_SIZE, 2);
	}
	return add_expr(r, bo) &&
	       add_payload_to(r, NFT_PAYLOAD_TRANSPORT_HEADER, m->kind == NFT_MAP_PORTS ? 2 : 0, 2,
			      NFT_REG32_01) &&
	       add_lookup(r, m->name, m->id, true);
}

/* One rule of chain (rules index). The sets and maps it looks up are
 * made in the same transaction (a delta's too: only new class chains get
 * rules), so they go by id as well as by name. */
static int emit_rule(struct nft_batch *nb, const char *chain, uint32_t index)
{
	const struct nft_plan *p = &nb->plan;
	const struct nft_plan_rule *pr = &p->rules[index];
	struct nft_obj o = {.kind = OBJ_RULE, .index = index};
	char comment[NFT_COMMENT_MAX], prefix[NFT_PREFIX_MAX];
	bool verdict =
	    pr->kind == NFT_PLAN_FIXED || pr->kind == NFT_PLAN_RULE || pr->kind == NFT_PLAN_FALLBACK;
	struct nftnl_rule *r;
	struct nlmsghdr *nlh;
	bool ok = true;
	int ret = -ENOMEM;

	if (verdict)
		nft_plan_rule_comment(pr, comment);
	r = rule_alloc(chain, verdict ? comment : NULL);
	if (!r)
		return -ENOMEM;
	switch (pr->kind) {
	case NFT_PLAN_FIXED:
		ok = add_fixed_match(r, pr);
		break;
	case NFT_PLAN_DISPATCH:
		ok = add_peer(r, pr->family, pr->dir) &&
		     add_lookup(r, p->maps[pr->map].name, p->maps[pr->map].id, true);
		break;
	case NFT_PLAN_LOOKUP:
		ok = add_proto_lookup(r, &p->maps[pr->map]);
		break;
	case NFT_PLAN_GOTO:
		ok = add_goto(r, p->chains[pr->target].name);
		break;
	default:
		ok = add_match(r, pr);
		break;
	}
	if (verdict) {
		/* An observe rule logs a new connection's first packet and
		 * lets it go on to its twin, which counts and accepts
		 * (nft-plan.h). */
		ok = ok && (pr->observe ? add_ct_unconfirmed(r) : add_counter(r));
		if (ok && nft_plan_rule_logs(pr)) {
			nft_plan_rule_prefix(pr, prefix);
			ok = add_log(r, prefix, nb->nflog_group);
		}
		if (ok && !pr->observe)
			ok = add_verdict(r, pr->verdict == VERDICT_DROP ? NF_DROP : NF_ACCEPT);
	}
	nlh = ok ? batch_hdr(nb, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, &o) : NULL;
	if (nlh) {
		nftnl_rule_nlmsg_build_payload(nlh, r);
		nb->stats.rules++;
		ret = batch_next(nb);
	}
	nftnl_rule_free(r);
	return ret;
}

/* The rules of chain index, in order. */
static int emit_chain_rules(struct nft_batch *nb, uint32_t index)
{
	const struct nft_plan_chain *c = &nb->plan.chains[index];
	int ret = 0;

	for (size_t i = c->first_rule; ret == 0 && i < c->first_rule + c->n_rules; i++)
		ret = emit_rule(nb, c->name, (uint32_t)i);
	return ret;
}

/* A map and its elements. */
static int emit_map_whole(struct nft_batch *nb, uint32_t index)
{
	struct nft_elem_dest d = {.map = &nb->plan.maps[index]};
	int ret = emit_map(nb, index);

	return ret ? ret : emit_elems(nb, &d);
}

/* BEGIN, into a fresh batch. */
static int batch_open(struct nft_batch *nb)
{
	struct nft_obj o = {.kind = OBJ_BATCH};
	uint32_t seq;
	int ret;

	nb->batch = nftnl_batch_alloc(NFT_BATCH_PAGE, NFT_BATCH_OVERRUN);
	if (!nb->batch)
		return -ENOMEM;
	/* Sequence numbers only have to be unique on this socket while the
	 * batch is in flight; the clock keeps them apart between runs. */
	nb->seq_base = (uint32_t)time(NULL) << 8;

	ret = batch_obj(nb, &o, &seq);
	if (ret < 0)
		return ret;
	/* The generation the transaction expects, filled in by the send:
	 * 0 asks for none. */
	struct nlmsghdr *nlh = nftnl_batch_begin(batch_buffer(nb), seq);
	struct nlattr *genid = mnl_nlmsg_get_payload_tail(nlh);

	mnl_attr_put_u32(nlh, NFNL_BATCH_GENID, 0);
	nb->genid = mnl_attr_get_payload(genid);
	return batch_next(nb);
}

/* END, and the batch's size. */
static int batch_close(struct nft_batch *nb)
{
	struct nft_obj o = {.kind = OBJ_BATCH};
	struct iovec *iov;
	uint32_t seq;
	int ret, n_iov;

	ret = batch_obj(nb, &o, &seq);
	if (ret < 0)
		return ret;
	nftnl_batch_end(batch_buffer(nb), seq);
	ret = batch_next(nb);
	if (ret < 0)
		return ret;
	n_iov = nftnl_batch_iovec_len(nb->batch);
	iov = calloc((size_t)n_iov, sizeof(*iov));
	if (!iov)
		return -ENOMEM;
	nftnl_batch_iovec(nb->batch, iov, (uint32_t)n_iov);
	for (int i = 0; i < n_iov; i++)
		nb->stats.bytes += iov[i].iov_len;
	free(iov);
	return 0;
}

static int batch_emit(struct nft_batch *nb)
{
	const struct nft_plan *p = &nb->plan;
	int ret = batch_open(nb);

	/* Create-if-missing then delete then create: replaces the table in
	 * one transaction whether or not it existed, as nft does. */
	if (ret == 0)
		ret = emit_table(nb, NFT_MSG_NEWTABLE, NLM_F_CREATE);
	if (ret == 0)
		ret = emit_table(nb, NFT_MSG_DELTABLE, 0);
	if (ret == 0)
		ret = emit_table(nb, NFT_MSG_NEWTABLE, NLM_F_CREATE);
	if (ret == 0)
		ret = emit_tag(nb, true);
	/* Chains before the maps whose elements go to them, maps before the
	 * rules that look them up. */
	for (uint32_t i = 0; ret == 0 && i < p->n_chains; i++)
		ret = emit_chain(nb, i);
	for (uint32_t i = 0; ret == 0 && i < p->n_sets; i++) {
		struct nft_elem_dest d = {.set = &p->sets[i]};

		ret = emit_set(nb, i);
		if (ret == 0)
			ret = emit_elems(nb, &d);
	}
	for (uint32_t i = 0; ret == 0 && i < p->n_maps; i++)
		ret = emit_map_whole(nb, i);
	for (uint32_t i = 0; ret == 0 && i < p->n_chains; i++)
		ret = emit_chain_rules(nb, i);
	if (ret == 0)
		ret = batch_close(nb);
	return ret;
}

/* The chain of p named name, or -1. Class chains: few, and looked up once
 * per delta. */
static long chain_find(const struct nft_plan *p, const char *name)
{
	for (size_t i = 0; i < p->n_chains; i++) {
		if (strcmp(p->chains[i].name, name) == 0)
			return (long)i;
	}
	return -1;
}

static bool map_elems_equal(const struct nft_plan *pa, const struct nft_plan_map *a,
			    const struct nft_plan *pb, const struct nft_plan_map *b)
{
	if (a->n_elems != b->n_elems || a->kind != b->kind)
		return false;
	for (size_t i = 0; i < a->n_elems; i++) {
		const struct nft_plan_elem *x = &a->elems[i], *y = &b->elems[i];

		if (memcmp(x->lo, y->lo, sizeof(x->lo)) != 0 || memcmp(x->hi, y->hi, sizeof(x->hi)) != 0 ||
		    strcmp(pa->chains[x->target].name, pb->chains[y->target].name) != 0)
			return false;
	}
	return true;
}

/* The maps of class chain c of p, in plan order: at most two. */
static size_t class_maps(const struct nft_plan *p, uint32_t c, const struct nft_plan_map *out[2])
{
	size_t n = 0;

	for (size_t i = 0; i < p->n_maps && n < 2; i++) {
		const struct nft_plan_map *m = &p->maps[i];

		if ((m->kind == NFT_MAP_PORTS || m->kind == NFT_MAP_ICMP) && m->chain == c)
			out[n++] = m;
	}
	return n;
}

/* A class chain both plans have is named after what it decides, so the
 * two are the same chain; checked anyway, rules and maps, since a delta
 * leaves it as it is. */
static bool classes_agree(const struct nft_plan *old, const struct nft_plan *now)
{
	for (size_t i = 0; i < now->n_chains; i++) {
		const struct nft_plan_chain *c = &now->chains[i];
		const struct nft_plan_map *ma[2], *mb[2];
		long j;

		if (c->kind != NFT_PLAN_CLASS_CHAIN || (j = chain_find(old, c->name)) < 0)
			continue;
		const struct nft_plan_chain *o = &old->chains[j];
		size_t na = class_maps(old, (uint32_t)j, ma), nn = class_maps(now, (uint32_t)i, mb);

		if (o->n_rules != c->n_rules || na != nn)
			return false;
		for (size_t k = 0; k < na; k++) {
			if (strcmp(ma[k]->name, mb[k]->name) != 0 || !map_elems_equal(old, ma[k], now, mb[k]))
				return false;
		}
		for (size_t k = 0; k < c->n_rules; k++) {
			const struct nft_plan_rule *x = &old->rules[o->first_rule + k],
						   *y = &now->rules[c->first_rule + k];

			if (x->kind != y->kind ||
			    (x->kind == NFT_PLAN_GOTO &&
			     strcmp(old->chains[x->target].name, now->chains[y->target].name) != 0))
				return false;
		}
	}
	return true;
}

static int gone_add(struct nft_batch *nb, const char *name)
{
	void *v = realloc(nb->gone, (nb->n_gone + 1) * sizeof(*nb->gone));

	if (!v)
		return -ENOMEM;
	nb->gone = v;
	snprintf(nb->gone[nb->n_gone++], NFT_NAME_MAX, "%s", name);
	return 0;
}

/* Removes what a class chain of old that now lacks was: the chain (its
 * rules with it: nf_tables deletes a chain's rules when the chain goes),
 * then its maps, which those rules looked up. */
static int emit_gone_class(struct nft_batch *nb, const struct nft_plan *old, uint32_t c)
{
	const struct nft_plan_map *maps[2];
	size_t n = class_maps(old, c, maps);
	struct nft_obj o = {.kind = OBJ_GONE, .index = (uint32_t)nb->n_gone};
	struct nftnl_chain *ch;
	int ret = gone_add(nb, old->chains[c].name);

	if (ret < 0 || !(ch = chain_named(old->chains[c].name)))
		return -ENOMEM;
	ret = emit_chain_msg(nb, ch, NFT_MSG_DELCHAIN, 0, &o);
	for (size_t i = 0; ret == 0 && i < n; i++) {
		struct nftnl_set *s;
		struct nlmsghdr *nlh;

		o.index = (uint32_t)nb->n_gone;
		if (gone_add(nb, maps[i]->name) < 0 || !(s = set_named(maps[i]->name, 0)))
			return -ENOMEM;
		nlh = batch_hdr(nb, NFT_MSG_DELSET, 0, &o);
		if (nlh)
			nftnl_set_nlmsg_build_payload(nlh, s);
		nftnl_set_free(s);
		ret = nlh ? batch_next(nb) : -ENOMEM;
	}
	return ret;
}

/* The delta from old to nb's plan: new class chains first (with their
 * maps and elements, then their rules), then the element delta
 * (nft_elements_delta()), then the class chains nothing goes to any more. */
static int batch_emit_delta(struct nft_batch *nb, const struct nft_plan *old)
{
	const struct nft_plan *p = &nb->plan;
	struct elem_writer w = {.nb = nb};
	int ret = batch_open(nb);

	if (ret == 0)
		ret = emit_tag(nb, false);
	for (uint32_t i = 0; ret == 0 && i < p->n_chains; i++) {
		if (p->chains[i].kind == NFT_PLAN_CLASS_CHAIN && chain_find(old, p->chains[i].name) < 0)
			ret = emit_chain(nb, i);
	}
	for (uint32_t i = 0; ret == 0 && i < p->n_maps; i++) {
		const struct nft_plan_map *m = &p->maps[i];

		if ((m->kind == NFT_MAP_PORTS || m->kind == NFT_MAP_ICMP) &&
		    chain_find(old, p->chains[m->chain].name) < 0)
			ret = emit_map_whole(nb, i);
	}
	for (uint32_t i = 0; ret == 0 && i < p->n_chains; i++) {
		if (p->chains[i].kind == NFT_PLAN_CLASS_CHAIN && chain_find(old, p->chains[i].name) < 0)
			ret = emit_chain_rules(nb, i);
	}
	if (ret == 0)
		ret = nft_elements_delta(old, p, elem_writer_put, &w);
	if (ret == 0)
		ret = elem_writer_end(&w);
	elem_writer_release(&w);
	for (uint32_t i = 0; ret == 0 && i < old->n_chains; i++) {
		if (old->chains[i].kind == NFT_PLAN_CLASS_CHAIN && chain_find(p, old->chains[i].name) < 0)
			ret = emit_gone_class(nb, old, i);
	}
	if (ret == 0)
		ret = batch_close(nb);
	return ret;
}

/* Never keeps half a batch around to be sent. */
static void batch_fail(struct nft_batch *nb, int ret)
{
	char saved[sizeof(nb->error)];

	snprintf(saved, sizeof(saved), "building the batch: %s", strerror(-ret));
	batch_reset(nb);
	memcpy(nb->error, saved, sizeof(saved));
}

int nft_batch_build(struct nft_batch *nb, const struct bundle *b, const struct bundle_endpoint *ep)
{
	int ret;

	batch_reset(nb);
	ret = nft_plan_build(&nb->plan, b, ep, nb->has_tag ? &nb->tag : NULL, nb->form, nb->error,
			     sizeof(nb->error));
	if (ret < 0)
		return ret;
	ret = batch_emit(nb);
	if (ret < 0)
		batch_fail(nb, ret);
	return ret;
}

int nft_batch_build_update(struct nft_batch *nb, const struct bundle *old_b,
			   const struct bundle_endpoint *old_ep, const struct bundle *b,
			   const struct bundle_endpoint *ep, bool *full)
{
	char old_err[256];
	struct nft_plan old;
	bool old_ok, same;
	int ret;

	batch_reset(nb);
	ret = nft_plan_build(&nb->plan, b, ep, nb->has_tag ? &nb->tag : NULL, nb->form, nb->error,
			     sizeof(nb->error));
	if (ret < 0)
		return ret;
	ret = nft_plan_build(&old, old_b, old_ep, NULL, nb->form, old_err, sizeof(old_err));
	if (ret == -ENOMEM) {
		batch_fail(nb, ret);
		return ret;
	}
	old_ok = ret == 0;
	same = old_ok && nft_plan_same_shape(&old, &nb->plan) && classes_agree(&old, &nb->plan);
	ret = same ? batch_emit_delta(nb, &old) : batch_emit(nb);
	if (old_ok)
		nft_plan_release(&old);
	if (ret < 0) {
		batch_fail(nb, ret);
		return ret;
	}
	*full = !same;
	return 0;
}

/* What a plan set is made from, for error messages. */
static const char *set_what(const struct nft_plan_set *ps)
{
	return ps->named ? "named port" : "bundle set";
}

static const char *set_src_id(const struct nft_plan_set *ps)
{
	return ps->named ? ps->named->id : ps->src->id;
}

/* Names the object behind sequence number seq, for error messages. */
static void describe_obj(const struct nft_batch *nb, uint32_t seq, char *buf, size_t size)
{
	const struct nft_plan *p = &nb->plan;
	const struct nft_obj *o;
	uint32_t i = seq - nb->seq_base;

	if (i >= nb->n_objs) {
		snprintf(buf, size, "message with unknown sequence %" PRIu32, seq);
		return;
	}
	o = &nb->objs[i];
	switch (o->kind) {
	case OBJ_BATCH:
		snprintf(buf, size, "transaction");
		break;
	case OBJ_TABLE:
		snprintf(buf, size, "%s table inet %s", o->nlmsg_type == NFT_MSG_DELTABLE ? "delete" : "add",
			 NFT_TABLE_NAME);
		break;
	case OBJ_SET:
		snprintf(buf, size, "set %s (%s %s)", p->sets[o->index].name, set_what(&p->sets[o->index]),
			 set_src_id(&p->sets[o->index]));
		break;
	case OBJ_MAP:
		snprintf(buf, size, "map %s", p->maps[o->index].name);
		break;
	case OBJ_ELEMS:
		if (o->map)
			snprintf(buf, size, "%s elements from #%" PRIu32 " of map %s",
				 o->nlmsg_type == NFT_MSG_DELSETELEM ? "delete" : "add", o->first,
				 p->maps[o->index].name);
		else
			snprintf(buf, size, "%s elements from #%" PRIu32 " of set %s (%s %s)",
				 o->nlmsg_type == NFT_MSG_DELSETELEM ? "delete" : "add", o->first,
				 p->sets[o->index].name, set_what(&p->sets[o->index]),
				 set_src_id(&p->sets[o->index]));
		break;
	case OBJ_CHAIN:
		snprintf(buf, size, "chain %s", p->chains[o->index].name);
		break;
	case OBJ_GONE:
		snprintf(buf, size, "%s %s (a class of peers no longer there)",
			 o->nlmsg_type == NFT_MSG_DELCHAIN ? "delete chain" : "delete map",
			 o->index < nb->n_gone ? nb->gone[o->index] : "?");
		break;
	case OBJ_TAG:
		snprintf(buf, size, "%s of set %s (the bundle tag)",
			 o->nlmsg_type == NFT_MSG_NEWSET       ? "creation"
			 : o->nlmsg_type == NFT_MSG_DELSETELEM ? "flush"
							       : "element",
			 NFT_TAG_SET);
		break;
	case OBJ_RULE: {
		const struct nft_plan_rule *pr = &p->rules[o->index];
		const struct nft_plan_chain *c = NULL;
		const char *reason = p->ep->chains[pr->dir].fallback_reason;

		for (size_t k = 0; k < p->n_chains && !c; k++) {
			if (o->index >= p->chains[k].first_rule &&
			    o->index < p->chains[k].first_rule + p->chains[k].n_rules)
				c = &p->chains[k];
		}
		if (!c) {
			snprintf(buf, size, "rule #%" PRIu32, o->index);
			break;
		}
		size_t nth = o->index - c->first_rule;

		if (pr->kind == NFT_PLAN_FIXED)
			snprintf(buf, size, "rule %s[%zu] (%s: %s)", c->name, nth, fixed_rule_id(pr->fixed),
				 nft_plan_fixed_match(pr->dir, pr->fixed));
		else if (pr->kind == NFT_PLAN_RULE)
			snprintf(buf, size, "rule %s[%zu] (bundle rule %s)", c->name, nth, pr->src->id);
		else if (pr->kind == NFT_PLAN_FALLBACK)
			snprintf(buf, size, "rule %s[%zu] (fallback %s)", c->name, nth,
				 reason ? reason : verdict_name(pr->verdict));
		else if (pr->kind == NFT_PLAN_GOTO)
			snprintf(buf, size, "rule %s[%zu] (goto %s)", c->name, nth,
				 p->chains[pr->target].name);
		else
			snprintf(buf, size, "rule %s[%zu] (lookup in map %s)", c->name, nth,
				 p->maps[pr->map].name);
		break;
	}
	}
}

/* Large batches need large socket buffers: the whole batch goes in one
 * sendmsg, and every object's ACK is queued before we read any. Root can
 * exceed the sysctl limits with the FORCE variants. */
static void socket_size(int fd, int opt, int force_opt, size_t want)
{
	int cur = 0;
	socklen_t len = sizeof(cur);

	if (want > INT32_MAX / 2)
		want = INT32_MAX / 2;
	if (getsockopt(fd, SOL_SOCKET, opt, &cur, &len) == 0 && (size_t)cur >= want)
		return;
	int v = (int)want;
	if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof(v)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v));
}

/* The kernel's extended-ACK message, when it sent one. */
static const char *ack_message(const struct nlmsghdr *nlh, const struct nlmsgerr *err)
{
	const struct nlattr *attr;
	const char *start, *end = (const char *)nlh + nlh->nlmsg_len;
	size_t skip = sizeof(*err);

	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return NULL;
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		skip += err->msg.nlmsg_len >= sizeof(struct nlmsghdr)
			    ? err->msg.nlmsg_len - sizeof(struct nlmsghdr)
			    : 0;
	start = (const char *)err + skip;
	if (start >= end)
		return NULL;
	for (attr = (const struct nlattr *)start; mnl_attr_ok(attr, (int)(end - (const char *)attr));
	     attr = mnl_attr_next(attr)) {
		if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
		    mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
			return mnl_attr_get_str(attr);
	}
	return NULL;
}

int nft_batch_send(struct nft_batch *nb, struct mnl_socket *nl)
{
	return nft_batch_send_at(nb, nl, 0);
}

int nft_batch_send_at(struct nft_batch *nb, struct mnl_socket *nl, uint32_t genid)
{
	struct sockaddr_nl snl = {.nl_family = AF_NETLINK};
	int fd = mnl_socket_get_fd(nl), one = 1, n_iov, first_err = 0;
	uint32_t portid = mnl_socket_get_portid(nl);
	size_t acked = 0, errors = 0;
	char first_obj[256] = "", first_msg[256] = "";
	struct iovec *iov;
	struct msghdr msg;
	bool lost = false;
	ssize_t sent;
	char *buf;

	nb->error[0] = '\0';
	if (!nb->batch) {
		snprintf(nb->error, sizeof(nb->error), "no batch built");
		return -EINVAL;
	}
	/* Short ACKs (no copy of our message), with the kernel's reason. */
	(void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	(void)setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	socket_size(fd, SO_SNDBUF, SO_SNDBUFFORCE, nb->stats.bytes + 4096);
	socket_size(fd, SO_RCVBUF, SO_RCVBUFFORCE, nb->n_acks * NFT_ACK_TRUESIZE + 256 * 1024);

	n_iov = nftnl_batch_iovec_len(nb->batch);
	iov = calloc((size_t)n_iov, sizeof(*iov));
	buf = malloc(NFT_RECV_BUF);
	if (!iov || !buf) {
		free(iov);
		free(buf);
		snprintf(nb->error, sizeof(nb->error), "out of memory");
		return -ENOMEM;
	}
	nftnl_batch_iovec(nb->batch, iov, (uint32_t)n_iov);
	uint32_t be = htonl(genid);
	memcpy(nb->genid, &be, sizeof(be));
	msg = (struct msghdr){
	    .msg_name = &snl,
	    .msg_namelen = sizeof(snl),
	    .msg_iov = iov,
	    .msg_iovlen = (size_t)n_iov,
	};
	sent = sendmsg(fd, &msg, 0);
	free(iov);
	if (sent < 0) {
		int e = errno;

		free(buf);
		snprintf(nb->error, sizeof(nb->error), "sending the batch (%zu bytes): %s", nb->stats.bytes,
			 strerror(e));
		return -e;
	}
	if ((size_t)sent != nb->stats.bytes) {
		free(buf);
		snprintf(nb->error, sizeof(nb->error), "batch sent short (%zd of %zu bytes)", sent,
			 nb->stats.bytes);
		return -EIO;
	}

	/* nfnetlink runs the whole transaction inside sendmsg(), so every
	 * ACK is already queued: read until the queue is empty. */
	for (;;) {
		ssize_t len = recv(fd, buf, NFT_RECV_BUF, MSG_DONTWAIT);
		const struct nlmsghdr *nlh;
		int left;

		if (len < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				lost = true;
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				first_err = first_err ? first_err : -errno;
				snprintf(first_msg, sizeof(first_msg), "reading acknowledgements: %s",
					 strerror(errno));
			}
			break;
		}
		left = (int)len;
		for (nlh = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, left);
		     nlh = mnl_nlmsg_next(nlh, &left)) {
			const struct nlmsgerr *err;

			if (nlh->nlmsg_pid != portid || nlh->nlmsg_type != NLMSG_ERROR)
				continue;
			if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(*err))
				continue;
			err = mnl_nlmsg_get_payload(nlh);
			if (err->error == 0) {
				acked++;
				continue;
			}
			/* The first error is the cause; later ones are often
			 * its consequences (a rule naming a failed set). */
			if (errors++ == 0) {
				const char *m = ack_message(nlh, err);

				first_err = err->error < 0 ? err->error : -EPROTO;
				describe_obj(nb, nlh->nlmsg_seq, first_obj, sizeof(first_obj));
				snprintf(first_msg, sizeof(first_msg), "%s%s%s", strerror(-first_err),
					 m ? ": kernel: " : "", m ? m : "");
			}
		}
	}
	free(buf);

	if (errors == 1 && first_err == -ERESTART) {
		/* nfnetlink refused the whole batch before looking at it. */
		snprintf(nb->error, sizeof(nb->error),
			 "the ruleset changed since generation %" PRIu32
			 " (another process committed); nothing applied",
			 genid);
		return first_err;
	}
	if (errors) {
		if (errors > 1)
			snprintf(nb->error, sizeof(nb->error), "%s: %s (and %zu more errors)", first_obj,
				 first_msg, errors - 1);
		else
			snprintf(nb->error, sizeof(nb->error), "%s: %s", first_obj, first_msg);
		return first_err;
	}
	if (first_err) {
		snprintf(nb->error, sizeof(nb->error), "%s", first_msg);
		return first_err;
	}
	if (lost || acked != nb->n_acks) {
		/* Without every ACK we cannot know whether the kernel
		 * committed; the caller must treat the table as unknown. */
		snprintf(nb->error, sizeof(nb->error),
			 "%zu of %zu acknowledgements received%s; outcome unknown", acked, nb->n_acks,
			 lost ? " (receive buffer overrun)" : "");
		return lost ? -ENOBUFS : -EPROTO;
	}
	return 0;
}
