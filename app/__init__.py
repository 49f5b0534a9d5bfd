"""The spec's three-terminal commands, from the repository's root: `uvicorn app.main:app` and
`celery -A app.celery_app worker`. A thin alias of `taskbench_service`, never installed, so that a user's own
package named `app` is never shadowed by taskbench's."""
