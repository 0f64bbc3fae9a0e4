create table orders (id bigserial primary key, status text not null);
