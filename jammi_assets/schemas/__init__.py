"""Schema evolution for sources: versioned schemas, version inference, migrations, compatibility.

Nothing here knows Dagster; `frames.assets` calls `lazy.to_current_version` before validation.
"""
