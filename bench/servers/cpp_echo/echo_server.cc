// The echo server of bench/servers/handwritten.py, in C++ (gRPC C++ from Debian's
// libgrpc++-dev): answers ModelInfer with zeros of the output's shape, runs no model.
// It measures what a non-Python gRPC front end would cost per request on this machine: the
// ceiling of the "front end that is not Python" candidate of issue 14. Bench only: built by
// bench/cpp_echo.py into a cache folder, never part of kerve.
//
// Usage: echo_server PORT_FILE NAME INPUT_NAME IN_DIMS OUTPUT_NAME OUT_DIMS
//   dims comma-separated without the batch dimension, e.g. 784 and 10.
#include <grpcpp/grpcpp.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "grpc_service.grpc.pb.h"

namespace {

std::vector<int64_t> ParseDims(const std::string& text) {
  std::vector<int64_t> dims;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) dims.push_back(std::stoll(part));
  return dims;
}

class EchoService final : public inference::GRPCInferenceService::Service {
 public:
  EchoService(std::string name, std::string input, std::vector<int64_t> in_dims,
              std::string output, std::vector<int64_t> out_dims)
      : name_(std::move(name)), input_(std::move(input)), in_dims_(std::move(in_dims)),
        output_(std::move(output)), out_dims_(std::move(out_dims)) {
    out_row_ = 1;
    for (int64_t d : out_dims_) out_row_ *= d;
  }

  grpc::Status ServerLive(grpc::ServerContext*, const inference::ServerLiveRequest*,
                          inference::ServerLiveResponse* r) override {
    r->set_live(true);
    return grpc::Status::OK;
  }
  grpc::Status ServerReady(grpc::ServerContext*, const inference::ServerReadyRequest*,
                           inference::ServerReadyResponse* r) override {
    r->set_ready(true);
    return grpc::Status::OK;
  }
  grpc::Status ModelReady(grpc::ServerContext*, const inference::ModelReadyRequest* q,
                          inference::ModelReadyResponse* r) override {
    r->set_ready(q->name() == name_);
    return grpc::Status::OK;
  }
  grpc::Status ServerMetadata(grpc::ServerContext*, const inference::ServerMetadataRequest*,
                              inference::ServerMetadataResponse* r) override {
    r->set_name("cpp-echo");
    r->set_version("0");
    r->add_extensions("model_configuration");
    return grpc::Status::OK;
  }
  grpc::Status ModelMetadata(grpc::ServerContext*, const inference::ModelMetadataRequest* q,
                             inference::ModelMetadataResponse* r) override {
    if (q->name() != name_) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such model");
    r->set_name(name_);
    r->add_versions("1");
    r->set_platform("keras");
    auto* in = r->add_inputs();
    in->set_name(input_);
    in->set_datatype("FP32");
    in->add_shape(-1);
    for (int64_t d : in_dims_) in->add_shape(d);
    auto* out = r->add_outputs();
    out->set_name(output_);
    out->set_datatype("FP32");
    out->add_shape(-1);
    for (int64_t d : out_dims_) out->add_shape(d);
    return grpc::Status::OK;
  }
  grpc::Status ModelConfig(grpc::ServerContext*, const inference::ModelConfigRequest* q,
                           inference::ModelConfigResponse* r) override {
    if (q->name() != name_) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such model");
    auto* config = r->mutable_config();
    config->set_name(name_);
    config->set_platform("keras");
    config->set_max_batch_size(128);
    auto* in = config->add_input();
    in->set_name(input_);
    in->set_data_type(inference::TYPE_FP32);
    for (int64_t d : in_dims_) in->add_dims(d);
    auto* out = config->add_output();
    out->set_name(output_);
    out->set_data_type(inference::TYPE_FP32);
    for (int64_t d : out_dims_) out->add_dims(d);
    return grpc::Status::OK;
  }
  grpc::Status ModelInfer(grpc::ServerContext*, const inference::ModelInferRequest* q,
                          inference::ModelInferResponse* r) override {
    if (q->model_name() != name_)
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such model");
    if (q->inputs_size() < 1 || q->inputs(0).shape_size() < 1)
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no input");
    const int64_t rows = q->inputs(0).shape(0);
    r->set_model_name(name_);
    r->set_model_version("1");
    r->set_id(q->id());
    auto* out = r->add_outputs();
    out->set_name(output_);
    out->set_datatype("FP32");
    out->add_shape(rows);
    for (int64_t d : out_dims_) out->add_shape(d);
    r->add_raw_output_contents()->assign(rows * out_row_ * sizeof(float), '\0');
    return grpc::Status::OK;
  }

 private:
  std::string name_, input_;
  std::vector<int64_t> in_dims_;
  std::string output_;
  std::vector<int64_t> out_dims_;
  int64_t out_row_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr,
                 "usage: %s PORT_FILE NAME INPUT_NAME IN_DIMS OUTPUT_NAME OUT_DIMS\n", argv[0]);
    return 2;
  }
  // Stop on SIGTERM/SIGINT: blocked here, before gRPC starts its threads (they inherit the
  // mask), and taken by one thread below that shuts the server down.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  EchoService service(argv[2], argv[3], ParseDims(argv[4]), argv[5], ParseDims(argv[6]));
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(256 << 20);
  builder.SetMaxSendMessageSize(256 << 20);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "could not start\n");
    return 1;
  }
  const std::string port_file = argv[1];
  {
    std::ofstream tmp(port_file + ".tmp");
    tmp << "{\"port\": " << port << ", \"pid\": " << getpid() << "}";
  }
  std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    server->Shutdown();
  });
  server->Wait();
  waiter.join();
  return 0;
}
