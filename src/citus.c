/*
 * citus.c
 *	  dealrisk on a Citus cluster: the warning for settings that the
 *	  workers would not see (docs/scaling.md, "Settings").
 *
 * Citus runs the functions of a pushed-down query on the workers, in
 * connections of their own, which read dealrisk's settings from the
 * worker's configuration, database and role defaults.  A plain SET in the
 * coordinator's session never reaches them, so is_won() would count other
 * labels and deal_risk() score as of another date there: a confident wrong
 * answer.  While it plans a call of such a function over a distributed
 * table, the coordinator warns.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "fmgr.h"
#include "nodes/nodeFuncs.h"
#include "nodes/pathnodes.h"
#include "nodes/supportnodes.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "dealrisk.h"

PG_FUNCTION_INFO_V1(dr_settings_support);

/* The settings read by the functions that Citus may run on a worker. */
static const char *const node_settings[] = {
	"dealrisk.as_of_date",
	"dealrisk.won_labels",
	"dealrisk.lost_labels",
	"dealrisk.open_labels",
	"dealrisk.band_medium",
	"dealrisk.band_high",
	"dealrisk.band_critical",
};

/* The statement that has had the warning already (once per statement). */
static TimestampTz warned_statement = 0;

/* What citus_table_walker looks for, and in which catalog table. */
typedef struct CitusTableSearch
{
	Relation	partitions;		/* pg_dist_partition, open */
	AttrNumber	relid_attno;	/* its logicalrelid column */
	AttrNumber	method_attno;	/* its partmethod column */
} CitusTableSearch;

/* Whether Citus has split a relation over shards (pg_dist_partition). */
static bool
is_distributed(Oid relid, CitusTableSearch *search)
{
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	ScanKeyInit(&key, search->relid_attno, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(search->partitions, InvalidOid, false, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		method = heap_getattr(tup, search->method_attno,
										  RelationGetDescr(search->partitions), &isnull);

		/* 'n': a reference or coordinator-local table, read on this node */
		if (!isnull && DatumGetChar(method) != 'n')
			found = true;
	}
	systable_endscan(scan);
	return found;
}

/* Walk a query tree, at any depth, for a Citus distributed table. */
static bool
citus_table_walker(Node *node, CitusTableSearch *search)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;

		return rte->rtekind == RTE_RELATION && is_distributed(rte->relid, search);
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, citus_table_walker, search,
								 QTW_EXAMINE_RTES_BEFORE);
	return expression_tree_walker(node, citus_table_walker, search);
}

/* Whether the query being planned (from its top level) reads a distributed table. */
static bool
reads_distributed_table(PlannerInfo *root)
{
	Oid			catalog = get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE);
	CitusTableSearch search;
	bool		found;

	if (!OidIsValid(catalog))
		return false;
	while (root->parent_root != NULL)
		root = root->parent_root;
	search.partitions = table_open(catalog, AccessShareLock);
	search.relid_attno = get_attnum(catalog, "logicalrelid");
	search.method_attno = get_attnum(catalog, "partmethod");
	found = search.relid_attno != InvalidAttrNumber &&
		search.method_attno != InvalidAttrNumber &&
		citus_table_walker((Node *) root->parse, &search);
	table_close(search.partitions, AccessShareLock);
	return found;
}

/*
 * Warn, once per statement, when the query being planned on a Citus
 * coordinator reads a distributed table while one of dealrisk's settings
 * has a value of this session that Citus does not send the workers: a
 * value other than the session's reset value (configuration, database and
 * role defaults, which the workers' connections get too), unless the
 * statement runs in a transaction block with citus.propagate_set_commands
 * = 'local' (then a SET LOCAL is sent; a plain SET there is not, and is
 * not told apart).  Cheap when nothing differs: no catalog is read.
 */
void
dr_warn_node_settings(PlannerInfo *root)
{
	const char *propagate;
	const char *name = NULL;
	const char *value = NULL;
	const char *reset = NULL;
	int			i;

	if (root == NULL)
		return;
	propagate = GetConfigOption("citus.propagate_set_commands", true, false);
	if (propagate == NULL)
		return;					/* Citus is not loaded in this backend */
	/* a worker planning its shard's query, or Citus's own connection */
	if (application_name != NULL && strncmp(application_name, "citus_internal", 14) == 0)
		return;
	if (IsTransactionBlock() && strcmp(propagate, "local") == 0)
		return;
	for (i = 0; i < lengthof(node_settings); i++)
	{
		const char *cur = GetConfigOption(node_settings[i], true, false);
		const char *rst = GetConfigOptionResetString(node_settings[i]);

		if (cur != NULL && strcmp(cur, rst != NULL ? rst : "") != 0)
		{
			name = node_settings[i];
			value = cur;
			reset = rst != NULL ? rst : "";
			break;
		}
	}
	if (name == NULL || warned_statement == GetCurrentStatementStartTimestamp())
		return;
	if (!reads_distributed_table(root))
		return;
	warned_statement = GetCurrentStatementStartTimestamp();
	ereport(WARNING,
			(errmsg("%s is \"%s\" in this session only: the Citus workers that run this query read \"%s\"",
					name, value, reset),
			 errdetail("dealrisk's functions that Citus runs next to the rows (is_won, deal_risk, risk_band, ...) read the setting on the worker, where a SET of the coordinator's session does not reach."),
			 errhint("Set it for the database or the role (ALTER DATABASE or ALTER ROLE ... SET, which Citus sends the workers), or SET LOCAL it inside a transaction with citus.propagate_set_commands = 'local' (docs/scaling.md).")));
}

/*
 * Planner support of is_won() and risk_band(): the settings warning of a
 * Citus coordinator (dr_warn_node_settings); the call itself is kept.
 */
Datum
dr_settings_support(PG_FUNCTION_ARGS)
{
	Node	   *rawreq = (Node *) PG_GETARG_POINTER(0);

	if (IsA(rawreq, SupportRequestSimplify))
		dr_warn_node_settings(((SupportRequestSimplify *) rawreq)->root);
	PG_RETURN_POINTER(NULL);
}
