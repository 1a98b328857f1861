/* quarantine: the table a namespace holds while it must not run without
 * rules and has none yet (DESIGN §3, "No window without rules"): a
 * container the agent saw start, before the controller has compiled its
 * table; the OCI hook's answer when no table can come in time.
 *
 * It is an endpoint's table like any other, of a bundle made here: its
 * chains have no rule, so after the rules every chain starts with
 * (established and related, loopback, IPv6 neighbour discovery: accepted;
 * invalid: dropped) everything is dropped and logged, reported as rule
 * QUARANTINE_RULE. So it is built, loaded, read back, counted and put
 * back when someone changes it by the same code as every table, and the
 * real table replaces it in one transaction. Its tag (nft.h) has serial
 * 0: no cached bundle takes it for a newer table. */
#pragma once

#include <stddef.h>

#include "bulkhead/bundle.h"
#include "bulkhead/common.h"
#include "dataplane.h"
#include "nft.h"

#define QUARANTINE_RULE "quarantine"

/* The quarantine bundle of one endpoint, name (copied): the caller owns
 * it (bundle_free). Aborts on ENOMEM, as the agent does. */
struct bundle *quarantine_bundle(const char *name);
/* The tag a quarantine table of b carries. */
void quarantine_tag(const struct bundle *b, struct nft_tag *out);

/* Puts the quarantine table into a namespace opened with dataplane_open()
 * (attached with dataplane_attach(), flags 0 will do): for a namespace no
 * endpoint holds yet, and for the OCI hook when no agent answers. name is
 * for logs and the bundle. 0, or a negative errno with why in err. */
BH_MUST_CHECK int quarantine_put(struct dataplane_ep *ep, const char *name, char *err, size_t errlen);
