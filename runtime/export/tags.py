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
    import functools

    from runtime import requirements
    from runtime.backends import backend_for
    from runtime.images import plan_image, requirements_target

    bases = sorted({function.base_image for function in project.functions.values()})

    async def tags() -> dict[str, str]:
        backend = backend_for(project, "docker")
        try:
            ids = {base: await backend.image_id(base) for base in bases}
            missing = [base for base, found in ids.items() if found is None]
            if missing:
                raise FaasError(f"no base image {', '.join(missing)} here: run `faas build` first")
            found: dict[str, str] = {}
            for name, spec in project.functions.items():
                base_id = ids[spec.base_image] or ""
                target = await requirements_target(backend, base_id)
                resolve = functools.partial(requirements.resolve, target=target)
                request = await asyncio.to_thread(
                    plan_image, project, spec, base_id, resolve, interpreter=target.interpreter
                )
                found[name] = request.tag
            return found
        finally:
            await backend.close()

    return asyncio.run(tags())
