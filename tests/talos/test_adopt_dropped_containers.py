"""A later adoption of a node that dropped, since it was first adopted, a
container it had then: nothing this program adds is left empty in its
place. The first adoption recorded which containers the node lacked
(``Originals.absent``) and only those are removed again when left empty, so
this program must not create an empty one that it has nothing to put in."""

from __future__ import annotations

from components.talos.adopt import merge
from components.talos.config_documents import dump_documents
from components.talos.machine_config import NVIDIA_MODULES
from tests.talos.running_configs import worker_documents
from tests.talos.test_adopt import owned
from tests.talos.test_kernel_module_documents import module_document, with_module_documents


def test_a_node_that_moved_its_modules_into_documents_gets_no_empty_kernel_modules_list():
    # First adoption: the node lists its own modules in machine.kernel.modules (nbd), so kernel is not recorded as absent.
    first = worker_documents("v1.13.9")
    assert first[0]["machine"]["kernel"] == {"modules": [{"name": "nbd"}]}
    originals = merge(first, owned()).originals
    assert "kernel" not in originals.absent and "kernel.modules" not in originals.absent
    # Since then the admin moved every module into KernelModuleConfig documents (Talos 1.14's form) and dropped machine.kernel.
    now = with_module_documents([*NVIDIA_MODULES, "nbd"])
    del now[0]["machine"]["kernel"]
    merged = merge(now, owned(), originals)
    assert "kernel" not in merged.documents[0]["machine"]
    assert "kernel:" not in dump_documents(merged.documents)
    assert not any(change.path.startswith("machine.kernel") for change in merged.changes)
    assert merged.documents[1:] == now[1:]
    assert module_document("nbd") in merged.documents
