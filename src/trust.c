/*
 * trust.c
 *	  Whether reading a deal source can run code of a role less trusted than
 *	  the caller, with the caller's privileges.
 *
 * Reading a relation runs code its owner chose: a view's functions, the
 * immutable functions of index and statistics expressions and of the
 * constraints of inheritance children (the planner folds them in the
 * reader's session), row-level security policies.  A superuser who runs
 * dealrisk.refresh() on another role's table would run that role's code as
 * a superuser.  So every relation a source reads — the source, its
 * inheritance children and partitions, and, for a view, every relation and
 * function its query uses, recursively — must belong to a role the caller
 * trusts: the caller, a role with no more than the caller's privileges (a
 * member of the caller), a superuser, or a role a superuser listed in
 * dealrisk.trusted_owners.
 *
 * Each relation is locked (AccessShareLock, as a query on it would) before
 * its owner is read from the catalog caches, so what is checked is what the
 * queries that follow will read: renaming, replacing or re-owning it waits
 * for the caller's transaction to end.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_proc.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "rewrite/rewriteHandler.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "dealrisk.h"

PG_FUNCTION_INFO_V1(dr_check_relation_trust);
PG_FUNCTION_INFO_V1(dr_trusted_owner);

/* State of one check: whose privileges, the source's name, what was seen. */
typedef struct TrustWalk
{
	Oid			user;
	const char *source;
	List	   *seen;			/* relations checked already */
} TrustWalk;

static void check_relation(Oid relid, TrustWalk *w);

/* Whether role owner is one of the roles listed in dealrisk.trusted_owners. */
static bool
listed_owner(Oid owner)
{
	char	   *copy;
	List	   *names;
	ListCell   *lc;
	bool		found = false;

	if (dr_trusted_owners == NULL || dr_trusted_owners[0] == '\0')
		return false;
	copy = pstrdup(dr_trusted_owners);
	/* the check hook accepted the list: it splits */
	if (!SplitIdentifierString(copy, ',', &names))
		return false;
	foreach(lc, names)
	{
		if (get_role_oid((char *) lfirst(lc), true) == owner)
		{
			found = true;
			break;
		}
	}
	list_free(names);
	pfree(copy);
	return found;
}

/* Whether code of role owner may run with the privileges of role user. */
static bool
owner_trusted(Oid owner, Oid user)
{
	return owner == user || superuser_arg(owner) ||
		has_privs_of_role(owner, user) || listed_owner(owner);
}

/* The error for an object of an untrusted owner reached from the source. */
static void
untrusted(TrustWalk *w, const char *what, Oid owner)
{
	char	   *owner_name = GetUserNameFromId(owner, false);
	char	   *user_name = GetUserNameFromId(w->user, false);

	/* a superuser's privileges are never to be handed to the owner */
	if (superuser_arg(w->user))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s, read for source \"%s\", belongs to role \"%s\", whose code would run with the privileges of role \"%s\"",
						what, w->source, owner_name, user_name),
				 errdetail("Reading a relation runs code its owner chose (a view's functions, index and statistics expressions, constraints, policies) with the reader's privileges."),
				 errhint("Run this as role %s, or, if you trust that role with a superuser's privileges, add it to dealrisk.trusted_owners.",
						 quote_identifier(owner_name))));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s, read for source \"%s\", belongs to role \"%s\", whose code would run with the privileges of role \"%s\"",
					what, w->source, owner_name, user_name),
			 errdetail("Reading a relation runs code its owner chose (a view's functions, index and statistics expressions, constraints, policies) with the reader's privileges."),
			 errhint("Run this as role %s (or a role it is a member of), make that role a member of yours if it may act as you (GRANT %s TO %s), or ask a superuser to add it to dealrisk.trusted_owners.",
					 quote_identifier(owner_name), quote_identifier(user_name),
					 quote_identifier(owner_name))));
}

/* check_functions_in_node callback: an error for a function of an untrusted owner. */
static bool
check_function(Oid funcid, void *context)
{
	TrustWalk  *w = (TrustWalk *) context;
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (!HeapTupleIsValid(tup))
		return false;			/* dropped meanwhile: the query will fail */
	owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);
	if (!owner_trusted(owner, w->user))
		untrusted(w, psprintf("function %s", format_procedure(funcid)), owner);
	return false;
}

/* Walk a view's query: its functions, and the relations of its range tables. */
static bool
trust_walker(Node *node, TrustWalk *w)
{
	if (node == NULL)
		return false;
	check_stack_depth();
	check_functions_in_node(node, check_function, w);
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, trust_walker, w,
								 QTW_EXAMINE_RTES_BEFORE);
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;

		if (rte->rtekind == RTE_RELATION)
			check_relation(rte->relid, w);
		return false;
	}
	return expression_tree_walker(node, trust_walker, w);
}

/* Lock a relation, check its owner, then its descendants or its view query. */
static void
check_relation(Oid relid, TrustWalk *w)
{
	HeapTuple	tup;
	Form_pg_class form;
	Oid			owner;
	char		kind;
	char	   *name;

	CHECK_FOR_INTERRUPTS();
	if (list_member_oid(w->seen, relid))
		return;
	w->seen = lappend_oid(w->seen, relid);

	LockRelationOid(relid, AccessShareLock);
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid),
				 errhint("It was dropped while dealrisk was about to read it.")));
	form = (Form_pg_class) GETSTRUCT(tup);
	owner = form->relowner;
	kind = form->relkind;
	name = quote_qualified_identifier(get_namespace_name(form->relnamespace),
									  NameStr(form->relname));
	ReleaseSysCache(tup);

	if (!owner_trusted(owner, w->user))
		untrusted(w, psprintf("relation %s", name), owner);

	if (kind == RELKIND_RELATION || kind == RELKIND_PARTITIONED_TABLE)
	{
		/* inheritance children and partitions are read with their parent */
		List	   *kids = find_all_inheritors(relid, AccessShareLock, NULL);
		ListCell   *lc;

		foreach(lc, kids)
			check_relation(lfirst_oid(lc), w);
	}
	else if (kind == RELKIND_VIEW)
	{
		Relation	rel = relation_open(relid, NoLock);
		Query	   *query = copyObject(get_view_query(rel));

		relation_close(rel, NoLock);
		trust_walker((Node *) query, w);
	}
}

/*
 * SQL: _check_relation_trust(source regclass) -> void.  Locks every relation
 * reading source involves and raises an error naming the first one, or the
 * first function of a view, whose owner the current user does not trust.
 */
Datum
dr_check_relation_trust(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	TrustWalk	w;
	char	   *name;

	name = get_rel_name(relid);
	w.user = GetUserId();
	w.source = name ? name : "?";
	w.seen = NIL;
	check_relation(relid, &w);
	list_free(w.seen);
	PG_RETURN_VOID();
}

/*
 * SQL: _trusted_owner(role oid) -> boolean.  Whether code of a role may run
 * with the current user's privileges: the rule of the relation check, for
 * the SQL that checks column types.
 */
Datum
dr_trusted_owner(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(owner_trusted(PG_GETARG_OID(0), GetUserId()));
}
