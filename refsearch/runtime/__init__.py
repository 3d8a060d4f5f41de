"""The network on an inference runtime (ONNX Runtime) on CPU: a backbone exported once to an ONNX graph,
cached on disk (`cache`), and run without torch (`network`). Only the export (`graph`) imports torch.

    network = open_network(GraphKey(name, fingerprint, input_size), lambda: create_backbone(...))
    output = network.extract(luminance)   # NetworkOutput of numpy arrays, as Backbone.extract's tensors
"""
from .cache import CACHE_VARIABLE, GraphKey, cache_folder, graph_path, open_network
from .network import RUNTIME, RUNTIME_VERSION, NetworkInfo, RuntimeNetwork

__all__ = ["CACHE_VARIABLE", "RUNTIME", "RUNTIME_VERSION", "GraphKey", "NetworkInfo", "RuntimeNetwork",
           "cache_folder", "graph_path", "open_network"]
