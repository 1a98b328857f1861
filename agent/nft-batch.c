/* nft-batch: a plan (nft-plan.h) as one nftables transaction built with
 * libnftnl, and its sending with libmnl: the generation-id bracket, every
 * acknowledgement drained, and an error that names the object. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
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
 * needs them to print the elements as addresses. */
#define NFT_TYPE_IPADDR		 7
#define NFT_TYPE_IP6ADDR	 8
#define NFT_TYPE_MARK		 19
#define NFT_BYTEORDER_BIG_ENDIAN 2

/* Batch pages as nft sizes them; one message must fit in the overrun. */
#define NFT_BATCH_PAGE	  (128 * 1024)
#define NFT_BATCH_OVERRUN (64 * 1024)
/* Elements per NEWSETELEM message: the element list is one netlink
 * attribute, whose length is 16 bits. 256 IPv6 intervals stay well below. */
#define NFT_ELEMS_PER_MSG 256
/* Receive buffer per expected acknowledgement (skb truesize, rounded up). */
#define NFT_ACK_TRUESIZE 1024
#define NFT_RECV_BUF	 16384

enum obj_kind {
	OBJ_BATCH,
	OBJ_TABLE,
	OBJ_SET,
	OBJ_ELEMS,
	OBJ_CHAIN,
	OBJ_RULE,
	OBJ_TAG, /* the tag set, or its element */
};

/* What one message of the batch was; message i has sequence seq_base + i. */
struct nft_obj {
	enum obj_kind kind;
	uint32_t index; /* set or plan rule index */
	uint32_t first; /* OBJ_ELEMS: first element of the chunk */
	uint16_t dir;
	uint16_t nlmsg_type;
};

struct nft_batch {
	uint16_t nflog_group;
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
	struct nft_batch_stats stats;
	char error[1024];
};

struct nft_batch *nft_batch_new(uint16_t nflog_group)
{
	struct nft_batch *nb = calloc(1, sizeof(*nb));

	if (!nb)
		return NULL;
	nb->nflog_group = nflog_group;
	return nb;
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

/* The set as the head of an element message, or of NEWSET. with_id names
 * a set created in this same transaction by its NFTA_SET_ID as well; a
 * delta's sets exist already and go by name alone. */
static struct nftnl_set *set_alloc(const struct nft_plan_set *ps, bool with_id)
{
	struct nftnl_set *s = nftnl_set_alloc();

	if (!s)
		return NULL;
	nftnl_set_set_str(s, NFTNL_SET_TABLE, NFT_TABLE_NAME);
	nftnl_set_set_str(s, NFTNL_SET_NAME, ps->name);
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
	if (with_id)
		nftnl_set_set_u32(s, NFTNL_SET_ID, ps->id);
	return s;
}

/* Elements on their way into NEWSETELEM or DELSETELEM messages of at
 * most NFT_ELEMS_PER_MSG elements each, one set and one kind at a time. */
struct elem_writer {
	struct nft_batch *nb;
	const struct nft_plan_set *ps; /* NULL: none yet */
	uint32_t set_index;
	uint16_t type; /* NFT_MSG_NEWSETELEM or NFT_MSG_DELSETELEM */
	bool with_id;  /* the set is created in this transaction */
	struct nftnl_set *chunk;
	uint32_t in_chunk; /* elements in chunk */
	uint32_t done;	   /* elements already in messages */
};

static int elem_writer_flush(struct elem_writer *w)
{
	struct nft_obj o = {.kind = OBJ_ELEMS, .index = w->set_index, .first = w->done};
	struct nlmsghdr *nlh;
	int ret;

	if (!w->chunk || !w->in_chunk)
		return 0;
	/* Additions may create; deletions of what is not there fail, which
	 * says the table is not what we think it is (see nft.h). */
	nlh = batch_hdr(w->nb, w->type, w->type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0, &o);
	if (!nlh)
		return -ENOMEM;
	nftnl_set_elems_nlmsg_build_payload(nlh, w->chunk);
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
	nftnl_set_free(w->chunk);
	w->chunk = NULL;
	return 0;
}

/* Drops what was not flushed; after an error, or after the last flush. */
static void elem_writer_release(struct elem_writer *w)
{
	if (w->chunk) /* libnftnl's free functions do not take NULL */
		nftnl_set_free(w->chunk);
	w->chunk = NULL;
}

/* The messages of the set and kind written so far are complete. */
static int elem_writer_end(struct elem_writer *w)
{
	int ret = elem_writer_flush(w);

	elem_writer_release(w);
	return ret;
}

/* nft_elem_fn: one element into the current message; a new set or kind
 * closes the messages of the one before. */
static int elem_writer_put(void *arg, const struct nft_plan_set *ps, bool add, const struct nft_elem *e)
{
	struct elem_writer *w = arg;
	uint16_t type = add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM;
	unsigned len = nft_addr_len(ps->family);
	struct nftnl_set_elem *el;

	if (ps != w->ps || type != w->type) {
		int ret = elem_writer_end(w);

		if (ret < 0)
			return ret;
		w->ps = ps;
		w->set_index = (uint32_t)(ps - w->nb->plan.sets);
		w->type = type;
		w->done = 0;
	}
	if (!w->chunk) {
		w->chunk = set_alloc(w->ps, w->with_id);
		if (!w->chunk)
			return -ENOMEM;
	}
	el = nftnl_set_elem_alloc();
	if (!el)
		return -ENOMEM;
	nftnl_set_elem_set(el, NFTNL_SET_ELEM_KEY, e->key, len);
	if (e->end)
		nftnl_set_elem_set_u32(el, NFTNL_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
	if (e->top && add) {
		/* Tells nft list that this interval runs to the top of the
		 * address space, where no end element can follow (as nft
		 * itself marks it). */
		struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(16);

		if (!ud ||
		    !nftnl_udata_put_u32(ud, NFTNL_UDATA_SET_ELEM_FLAGS, NFTNL_SET_ELEM_F_INTERVAL_OPEN)) {
			nftnl_udata_buf_free(ud);
			nftnl_set_elem_free(el);
			return -ENOMEM;
		}
		nftnl_set_elem_set(el, NFTNL_SET_ELEM_USERDATA, nftnl_udata_buf_data(ud),
				   nftnl_udata_buf_len(ud));
		nftnl_udata_buf_free(ud);
	}
	nftnl_set_elem_add(w->chunk, el);
	w->in_chunk++;
	/* An interval's end goes into its start's message, so that the
	 * kernel never sees half an interval. */
	if (w->in_chunk >= NFT_ELEMS_PER_MSG && !e->more)
		return elem_writer_flush(w);
	return 0;
}

/* Every element of a set created in this transaction. */
static int emit_elems(struct nft_batch *nb, uint32_t set_index)
{
	struct elem_writer w = {.nb = nb, .with_id = true};
	int ret = nft_elements_all(&nb->plan.sets[set_index], elem_writer_put, &w);

	if (ret == 0)
		return elem_writer_end(&w);
	elem_writer_release(&w);
	return ret;
}

static int emit_set(struct nft_batch *nb, uint32_t set_index)
{
	const struct nft_plan_set *ps = &nb->plan.sets[set_index];
	struct nft_obj o = {.kind = OBJ_SET, .index = set_index};
	struct nftnl_udata_buf *ud;
	struct nftnl_set *s;
	struct nlmsghdr *nlh;

	s = set_alloc(ps, true);
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
	nlh = batch_hdr(nb, NFT_MSG_NEWSET, NLM_F_CREATE, &o);
	if (!nlh) {
		nftnl_set_free(s);
		return -ENOMEM;
	}
	nftnl_set_nlmsg_build_payload(nlh, s);
	nftnl_set_free(s);
	nb->stats.sets++;
	return batch_next(nb);
}

/* The tag set's one element, and the NFTA_SET_ID of the set when the
 * transaction creates it (plan sets count from 1). */
static const uint8_t tag_key[4] = {0, 0, 0, 1}; /* 0x00000001 as nft lists it */
#define NFT_TAG_SET_ID UINT32_MAX

static struct nftnl_set *tag_set_alloc(bool created)
{
	struct nftnl_set *s = nftnl_set_alloc();

	if (!s)
		return NULL;
	nftnl_set_set_str(s, NFTNL_SET_TABLE, NFT_TABLE_NAME);
	nftnl_set_set_str(s, NFTNL_SET_NAME, NFT_TAG_SET);
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
	if (created)
		nftnl_set_set_u32(s, NFTNL_SET_ID, NFT_TAG_SET_ID);
	return s;
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

static int emit_chain(struct nft_batch *nb, enum direction dir)
{
	struct nft_obj o = {.kind = OBJ_CHAIN, .dir = dir};
	struct nftnl_chain *c = nftnl_chain_alloc();
	struct nlmsghdr *nlh;

	if (!c)
		return -ENOMEM;
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, NFT_TABLE_NAME);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, nb->plan.chains[dir].name);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
	nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, "filter");
	nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM,
			    dir == DIR_INGRESS ? NF_INET_LOCAL_IN : NF_INET_LOCAL_OUT);
	nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, 0);
	/* Drops come from the chain's own fallback rule, which logs them. */
	nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	nlh = batch_hdr(nb, NFT_MSG_NEWCHAIN, NLM_F_CREATE, &o);
	if (!nlh) {
		nftnl_chain_free(c);
		return -ENOMEM;
	}
	nftnl_chain_nlmsg_build_payload(nlh, c);
	nftnl_chain_free(c);
	nb->stats.chains++;
	return batch_next(nb);
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

static bool add_payload(struct nftnl_rule *r, uint32_t base, uint32_t offset, uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("payload");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
		nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
	}
	return add_expr(r, e);
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

static bool add_lookup(struct nftnl_rule *r, const struct nft_plan_set *ps)
{
	struct nftnl_expr *e = nftnl_expr_alloc("lookup");

	if (e) {
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
		nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, ps->name);
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, ps->id);
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

static struct nftnl_rule *rule_alloc(enum direction dir, const char *comment)
{
	struct nftnl_rule *r = nftnl_rule_alloc();

	if (!r)
		return NULL;
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, NFT_TABLE_NAME);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, dir == DIR_INGRESS ? NFT_CHAIN_INGRESS : NFT_CHAIN_EGRESS);
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

/* What a rule of the bundle or a fallback matches: family, peer, port. */
static bool add_match(struct nftnl_rule *r, const struct nft_plan_rule *pr)
{
	bool ok = true;

	if (pr->family) {
		/* nft adds this dependency itself; raw libnftnl must, or the
		 * address payload would be read from the wrong header. */
		ok = add_meta(r, NFT_META_NFPROTO, NFT_REG_1) &&
		     add_cmp_u8(r, pr->family == AF_INET ? NFPROTO_IPV4 : NFPROTO_IPV6);
	}
	if (ok && pr->set) {
		bool v4 = pr->family == AF_INET, src = pr->dir == DIR_INGRESS;
		uint32_t off = v4 ? (src ? 12 : 16) : (src ? 8 : 24);

		ok = add_payload(r, NFT_PAYLOAD_NETWORK_HEADER, off, v4 ? 4 : 16) && add_lookup(r, pr->set);
	}
	if (ok && pr->port)
		ok = add_port(r, pr->port);
	return ok;
}

static int emit_rule(struct nft_batch *nb, uint32_t index)
{
	const struct nft_plan_rule *pr = &nb->plan.rules[index];
	struct nft_obj o = {.kind = OBJ_RULE, .dir = pr->dir, .index = index};
	char comment[NFT_COMMENT_MAX], prefix[NFT_PREFIX_MAX];
	struct nftnl_rule *r;
	struct nlmsghdr *nlh;
	bool ok;
	int ret = -ENOMEM;

	nft_plan_rule_comment(pr, comment);
	r = rule_alloc(pr->dir, comment);
	if (!r)
		return -ENOMEM;
	ok = pr->kind == NFT_PLAN_FIXED ? add_fixed_match(r, pr) : add_match(r, pr);
	/* An observe rule logs a new connection's first packet and lets it
	 * go on to its twin, which counts and accepts (nft-plan.h). */
	ok = ok && (pr->observe ? add_ct_unconfirmed(r) : add_counter(r));
	if (ok && nft_plan_rule_logs(pr)) {
		nft_plan_rule_prefix(pr, prefix);
		ok = add_log(r, prefix, nb->nflog_group);
	}
	if (ok && !pr->observe)
		ok = add_verdict(r, pr->verdict == VERDICT_DROP ? NF_DROP : NF_ACCEPT);
	nlh = ok ? batch_hdr(nb, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, &o) : NULL;
	if (nlh) {
		nftnl_rule_nlmsg_build_payload(nlh, r);
		nb->stats.rules++;
		ret = batch_next(nb);
	}
	nftnl_rule_free(r);
	return ret;
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
	for (uint32_t i = 0; ret == 0 && i < nb->plan.n_sets; i++) {
		ret = emit_set(nb, i);
		if (ret == 0)
			ret = emit_elems(nb, i);
	}
	for (int d = 0; ret == 0 && d < DIR_COUNT; d++)
		ret = emit_chain(nb, d);
	for (size_t i = 0; ret == 0 && i < nb->plan.n_rules; i++)
		ret = emit_rule(nb, (uint32_t)i);
	if (ret == 0)
		ret = batch_close(nb);
	return ret;
}

/* The element delta (nft_elements_delta()) from old to nb's plan. */
static int batch_emit_delta(struct nft_batch *nb, const struct nft_plan *old)
{
	struct elem_writer w = {.nb = nb};
	int ret = batch_open(nb);

	if (ret == 0)
		ret = emit_tag(nb, false);
	if (ret == 0)
		ret = nft_elements_delta(old, &nb->plan, elem_writer_put, &w);
	if (ret == 0)
		ret = elem_writer_end(&w);
	elem_writer_release(&w);
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
	ret = nft_plan_build(&nb->plan, b, ep, nb->has_tag ? &nb->tag : NULL, nb->error, sizeof(nb->error));
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
	ret = nft_plan_build(&nb->plan, b, ep, nb->has_tag ? &nb->tag : NULL, nb->error, sizeof(nb->error));
	if (ret < 0)
		return ret;
	ret = nft_plan_build(&old, old_b, old_ep, NULL, old_err, sizeof(old_err));
	if (ret == -ENOMEM) {
		batch_fail(nb, ret);
		return ret;
	}
	old_ok = ret == 0;
	same = old_ok && nft_plan_same_shape(&old, &nb->plan);
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
		snprintf(buf, size, "set %s (bundle set %s)", p->sets[o->index].name,
			 p->sets[o->index].src->id);
		break;
	case OBJ_ELEMS:
		snprintf(buf, size, "%s elements from #%" PRIu32 " of set %s (bundle set %s)",
			 o->nlmsg_type == NFT_MSG_DELSETELEM ? "delete" : "add", o->first,
			 p->sets[o->index].name, p->sets[o->index].src->id);
		break;
	case OBJ_CHAIN:
		snprintf(buf, size, "chain %s", p->chains[o->dir].name);
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
		const struct nft_plan_chain *c = &p->chains[pr->dir];
		size_t nth = o->index - c->first_rule;
		const char *reason = p->ep->chains[pr->dir].fallback_reason;

		if (pr->kind == NFT_PLAN_FIXED)
			snprintf(buf, size, "rule %s[%zu] (%s: %s)", c->name, nth, fixed_rule_id(pr->fixed),
				 nft_plan_fixed_match(pr->dir, pr->fixed));
		else if (pr->kind == NFT_PLAN_RULE)
			snprintf(buf, size, "rule %s[%zu] (bundle rule %s)", c->name, nth, pr->src->id);
		else
			snprintf(buf, size, "rule %s[%zu] (fallback %s)", c->name, nth,
				 reason ? reason : verdict_name(pr->verdict));
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
