// SPDX-License-Identifier: MIT
/*
 * db-schema: the schema migrations, in order. fl_db_open() applies every
 * version above the highest row of schema_migrations, each in its own
 * transaction together with its schema_migrations row, so a migration is
 * applied entirely or not at all and re-running is a no-op.
 *
 * Never edit a migration that has shipped: add a new version. The audit
 * table's hardening (no UPDATE/DELETE/TRUNCATE for the role fluid connects
 * as, plus triggers that also stop superusers who do not first disable
 * them) is explained in docs/audit.md.
 */
#include "db-internal.h"

static const FlDbMigration migrations[] = {
	{1, "audit, commands, sandboxes, tokens",
	 /* Audit: gapless ids handed out under the chain head's row lock. */
	 "CREATE TABLE audit_head ("
	 "  id integer PRIMARY KEY CHECK (id = 1),"
	 "  last_id bigint NOT NULL,"
	 "  last_hash text NOT NULL);"
	 "INSERT INTO audit_head VALUES (1, 0, repeat('0', 64));"
	 "CREATE TABLE audit_events ("
	 "  id bigint PRIMARY KEY,"
	 "  at timestamptz NOT NULL,"
	 "  actor text NOT NULL,"
	 "  role text NOT NULL,"
	 "  action text NOT NULL,"
	 "  sandbox_id text,"
	 "  status integer NOT NULL,"
	 "  details jsonb,"
	 "  prev_hash text NOT NULL,"
	 "  hash text NOT NULL);"
	 "CREATE INDEX audit_events_sandbox ON audit_events (sandbox_id, id);"
	 "CREATE INDEX audit_events_at ON audit_events (at);"
	 "CREATE FUNCTION fl_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
	 " BEGIN RAISE EXCEPTION 'audit_events is append-only'"
	 "   USING ERRCODE = 'insufficient_privilege'; END $$;"
	 "CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events"
	 "  FOR EACH ROW EXECUTE FUNCTION fl_audit_append_only();"
	 "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events"
	 "  FOR EACH STATEMENT EXECUTE FUNCTION fl_audit_append_only();"
	 "REVOKE ALL ON audit_events FROM PUBLIC;"
	 "REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM CURRENT_USER;"

	 "CREATE TABLE commands ("
	 "  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
	 "  sandbox_id text NOT NULL,"
	 "  command text NOT NULL,"
	 "  env jsonb,"
	 "  run_as text,"
	 "  started_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
	 "  ended_at timestamptz,"
	 "  exit_code integer,"
	 "  signal integer,"
	 "  error text,"
	 "  stdout text, stderr text,"
	 "  stdout_bytes bigint, stderr_bytes bigint,"
	 "  stdout_sha256 text, stderr_sha256 text,"
	 "  stdout_truncated boolean, stderr_truncated boolean);"
	 "CREATE INDEX commands_sandbox ON commands (sandbox_id, started_at, id);"

	 "CREATE TABLE sandboxes ("
	 "  id text PRIMARY KEY,"
	 "  sandbox_name text, agent_id text, job_id text, base_image text, state text,"
	 "  created_at timestamptz, updated_at timestamptz,"
	 "  record jsonb NOT NULL,"
	 "  mirrored_at timestamptz NOT NULL DEFAULT now());"
	 "CREATE INDEX sandboxes_agent ON sandboxes (agent_id);"
	 "CREATE INDEX sandboxes_job ON sandboxes (job_id);"
	 "CREATE INDEX sandboxes_state ON sandboxes (state);"

	 "CREATE TABLE tokens ("
	 "  id text PRIMARY KEY,"
	 "  name text,"
	 "  role text NOT NULL CHECK (role IN ('agent', 'reviewer', 'admin')),"
	 "  hash text NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$'),"
	 "  created_at timestamptz NOT NULL DEFAULT now(),"
	 "  revoked_at timestamptz);"},
	/* Playbooks (appliance/ansible-store.c, docs/ansible.md). json, not
	 * jsonb: task parameters keep their key order in the rendered YAML. */
	{2, "playbooks, playbook tasks",
	 "CREATE TABLE playbooks ("
	 "  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
	 "  name text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),"
	 "  hosts text NOT NULL DEFAULT 'all',"
	 "  become boolean NOT NULL DEFAULT true,"
	 "  sandbox_id text, diff_id text,"
	 "  meta json NOT NULL DEFAULT '{}',"
	 "  created_at timestamptz NOT NULL DEFAULT now(),"
	 "  updated_at timestamptz NOT NULL DEFAULT now());"
	 "CREATE TABLE playbook_tasks ("
	 "  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
	 "  playbook_id uuid NOT NULL REFERENCES playbooks (id) ON DELETE CASCADE,"
	 "  position integer NOT NULL,"
	 "  name text NOT NULL, module text NOT NULL,"
	 "  params json NOT NULL, extra json NOT NULL DEFAULT '{}',"
	 "  created_at timestamptz NOT NULL DEFAULT now(),"
	 "  UNIQUE (playbook_id, position) DEFERRABLE INITIALLY DEFERRED);"},
	/* Approvals (appliance/db-approvals.c, docs/approvals.md). The state
	 * machine is also enforced here so no code path can skip a step. */
	{3, "approvals",
	 "CREATE TABLE approvals ("
	 "  id text PRIMARY KEY CHECK (id ~ '^apr_[0-9a-f]{32}$'),"
	 "  kind text NOT NULL CHECK (kind IN ('change', 'command', 'question')),"
	 "  state text NOT NULL DEFAULT 'pending' CHECK (state IN"
	 "    ('pending', 'approved', 'rejected', 'applying', 'applied', 'failed')),"
	 "  summary text NOT NULL,"
	 "  details jsonb,"
	 "  sandbox_id text, change_id text,"
	 "  playbook text, playbook_sha256 text CHECK (playbook_sha256 ~ '^[0-9a-f]{64}$'),"
	 "  requested_by text NOT NULL, requested_role text NOT NULL,"
	 "  decided_by text, comment text, decided_at timestamptz,"
	 "  apply jsonb,"
	 "  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
	 "  updated_at timestamptz NOT NULL DEFAULT clock_timestamp());"
	 "CREATE INDEX approvals_state ON approvals (state, created_at);"
	 "CREATE INDEX approvals_sandbox ON approvals (sandbox_id, created_at);"},
	/* Safety policies (appliance/db-policies.c, docs/policies.md): a token's
	 * policy (NULL = the default policy) and each sandbox's creator and
	 * policy (NULL = its creator's). Policy names refer to the config. */
	{4, "policy assignments",
	 "ALTER TABLE tokens ADD COLUMN policy text"
	 "  CHECK (policy ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$');"
	 "CREATE TABLE sandbox_policies ("
	 "  sandbox_id text PRIMARY KEY,"
	 "  creator text,"
	 "  policy text CHECK (policy ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),"
	 "  created_at timestamptz NOT NULL DEFAULT now(),"
	 "  updated_at timestamptz NOT NULL DEFAULT now());"
	 "CREATE INDEX sandbox_policies_creator ON sandbox_policies (creator);"},
};

size_t fl_db_migrations(const FlDbMigration **ret)
{
	*ret = migrations;
	return FL_ARRAY_SIZE(migrations);
}
