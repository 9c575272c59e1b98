{
  "targets": [
    {
      "target_name": "udp_batch",
      "sources": ["udp_batch.c", "udp_socket.c", "sd_notify.c", "hugepages.c", "nft_elements.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "conditions": [["OS!='linux'", { "type": "none", "sources": [] }]]
    }
  ]
}
