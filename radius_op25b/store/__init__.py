"""Repository functions over the subscriber database: every function takes a `session` and
leaves its lifecycle to the caller (one CLI command or one pipeline step = one transaction).

One module per aggregate; this package re-exports their functions, so callers write
`store.add_subscriber(...)`.
"""

from radius_op25b.core.decision import username_key  # noqa: F401  (the key subscribers are stored under)
from radius_op25b.store.audit import (  # noqa: F401
    ACTION_GROUPS,
    ACTIONS,
    VIA,
    audit,
    audit_entries,
    check_action,
    made_via,
)
from radius_op25b.store.checks import (  # noqa: F401
    CLASSES,
    IP_TYPES,
    NOTIFY_CHANNEL,
    check_address,
    check_cidr,
    check_class,
    check_realm_name,
    check_username,
    realm_for,
)
from radius_op25b.store.imports import (  # noqa: F401
    CSV_COLUMNS,
    Change,
    ImportPlan,
    ImportRow,
    ParsedImport,
    Refusal,
    apply_import,
    parse_import,
    plan_import,
    refusal_summary,
)
from radius_op25b.store.jobs import (  # noqa: F401
    _NOW,
    _PUSH_WORK_DUE,
    _add_jobs,
    _exemption_expired_unpushed,
    _job_claimable,
    _permit_expired_unpushed,
    affected_sessions,
    claim_pushes,
    finish_push,
    hold_pushes,
    last_pushes,
    push_work_due,
    queue_expired,
    queue_pushes,
)
from radius_op25b.store.realms import (  # noqa: F401
    add_mobile_mta_block,
    add_realm,
    delete_realm,
    find_realm,
    get_realm,
    list_mobile_mta_blocks,
    list_realms,
    permit_msa,
    realm_state,
    remove_mobile_mta_block,
    revoke_msa,
)
from radius_op25b.store.sessions import (  # noqa: F401
    _apply_record,
    _prefix_candidates,
    active_sessions,
    apply_accounting,
    last_session_with,
    purge_sessions,
    who_had,
)
from radius_op25b.store.subscribers import (  # noqa: F401
    _change,
    active_exemption,
    active_exemptions,
    add_subscriber,
    count_subscribers,
    delete_subscriber,
    exempt,
    exemption_state,
    find_subscriber,
    get_subscriber,
    list_subscribers,
    lock_subscriber,
    set_class,
    set_dynamic,
    set_note,
    set_realm,
    set_static,
    static_owners,
    subscriber_owning,
    subscriber_state,
    unexempt,
)
from radius_op25b.store.views import (  # noqa: F401
    _SPECIAL_SUBSCRIBERS,
    _SUBSCRIBERS_BY_KEY,
    _VIEW_ROWS,
    _views,
    exemption_view,
    mobile_mta_networks,
    policy_inputs,
    realm_view,
    realm_views,
    special_subscriber_views,
    subscriber_view,
)
