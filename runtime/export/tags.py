"""Each function's image tag as `faas build` names it, for exporters that name images.

Nothing is built: the tag is planned (runtime/images.py) from the base image's id,
which the engine is asked for, so the engine must have the base images already.
Imports are deferred: the CLI imports this module for every command.
"""

from __future__ import annotations

from runtime.errors import FaasError
from runtime.spec import Project


def image_tags(project: Project) -> dict[str, str]:
    """Function name -> its image tag (`faas-function:<hash>`)."""
    import asyncio

    from runtime import requirements
    from runtime.backends import backend_for
    from runtime.images import plan_image

    bases = sorted({function.base_image for function in project.functions.values()})

    async def base_ids() -> dict[str, str | None]:
        backend = backend_for(project, "docker")
        try:
            return {base: await backend.image_id(base) for base in bases}
        finally:
            await backend.close()

    ids = asyncio.run(base_ids())
    missing = [base for base, found in ids.items() if found is None]
    if missing:
        raise FaasError(f"no base image {', '.join(missing)} here: run `faas build` first")
    return {
        name: plan_image(project, spec, ids[spec.base_image] or "", requirements.resolve).tag
        for name, spec in project.functions.items()
    }
