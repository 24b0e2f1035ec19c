"""The Open Inference Protocol over gRPC: KServe v2's `GRPCInferenceService` on a port of its own
(MODELYARD_GRPC_PORT), each method answered by the gateway's OIP front like its HTTP route.

    grpc_predict_v2.proto      the protocol's messages, from the published spec (its header says
                               what changed)
    grpc_predict_v2_pb2.py/.pyi  generated from it, checked in: grpcio-tools 1.81.1 (protoc
                               for protobuf 6.33.5), in this folder:
                               python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. \\
                                   grpc_predict_v2.proto
    tensors                    protobuf ⇄ OIP JSON (pure)
    answers                    a BentoML answer's outputs as ModelInferResponse bytes (pure)
    service                    the methods, over a running gateway; gateway errors → gRPC codes
    calls                      gRPC unary calls: method table, status, grpc-timeout, limits
    server                     listening, graceful stop (an HTTP/2 server of our own, in the
                               gateway's event loop):
    h2conn                     one HTTP/2 connection: state machine, flow control, bounds
    h2frames                   HTTP/2 frames and our answers' headers (pure)
    hpack_decode               HPACK decoding of requests' headers (pure)

How a call is translated, and what differs from HTTP: docs/grpc.md.
"""
